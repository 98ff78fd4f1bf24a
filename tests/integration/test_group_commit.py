"""Group commit: many tasks' writes share transactions, and one bad write fails only itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import pytest

from daemon.store import leases
from daemon.store.database import Database
from daemon.store.errors import IntegrityViolation, StoreError
from daemon.store.group_commit import GroupWriter, Refused, group_reader
from daemon.store.leases import LeaseRequest
from daemon.store.session import ONE_TRIP, Session, WriteBatch
from daemon.store.sqlite import SqliteDatabase
from tests.helpers import counted_trips


async def _insert(conn: Session, values: Sequence[int]) -> list[int]:
    await conn.execute_many("INSERT INTO scratch (v) VALUES (?)", [(v,) for v in values])
    return [v * 10 for v in values]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await SqliteDatabase.open(tmp_path / "group.db")
    await database.conn.execute("CREATE TABLE scratch (v INTEGER NOT NULL CHECK (v >= 0))")
    yield database
    await database.close()


async def _stored(db: Database) -> list[int]:
    async with db.reading() as conn:
        rows = await conn.fetch_all("SELECT v FROM scratch ORDER BY v")
    return [r[0] for r in rows]


async def _submit_all(writer: GroupWriter[int, int], values: Sequence[int]) -> dict[int, object]:
    results: dict[int, object] = {}

    async def one(value: int) -> None:
        try:
            results[value] = await writer.submit(value)
        except StoreError as exc:
            results[value] = exc

    async with writer.running(), anyio.create_task_group() as tg:
        for value in values:
            tg.start_soon(one, value)
    return results


async def test_writes_queued_together_commit_in_one_transaction(db: Database) -> None:
    writer = GroupWriter(db, _insert)

    results = await _submit_all(writer, range(200))

    assert await _stored(db) == list(range(200))
    assert results == {v: v * 10 for v in range(200)}  # each submitter gets its own result
    assert writer.transactions <= 2  # the first on its own, perhaps; then all the rest


async def test_a_failing_write_fails_only_its_submitter(db: Database) -> None:
    writer = GroupWriter(db, _insert)

    results = await _submit_all(writer, [1, 2, -3, 4, 5])

    assert isinstance(results.pop(-3), IntegrityViolation)
    assert results == {1: 10, 2: 20, 4: 40, 5: 50}
    assert await _stored(db) == [1, 2, 4, 5]


async def _insert_even(conn: Session, values: Sequence[int]) -> list[int | Refused]:
    """Refuses odd values (as a sync refuses a write whose lease is lost), inserts the rest."""
    await _insert(conn, [v for v in values if v % 2 == 0])
    return [v * 10 if v % 2 == 0 else Refused(f"odd: {v}") for v in values]


async def test_a_refused_write_fails_its_submitter_while_its_group_commits(db: Database) -> None:
    writer: GroupWriter[int, int] = GroupWriter(db, _insert_even)
    results: dict[int, object] = {}

    async def one(value: int) -> None:
        try:
            results[value] = await writer.submit(value)
        except Refused as exc:
            results[value] = str(exc)

    async with writer.running(), anyio.create_task_group() as tg:
        for value in range(6):
            tg.start_soon(one, value)

    assert results == {0: 0, 1: "odd: 1", 2: 20, 3: "odd: 3", 4: 40, 5: "odd: 5"}
    assert await _stored(db) == [0, 2, 4]
    assert writer.transactions <= 2  # refusing items does not split the group into retries


async def test_a_group_never_exceeds_its_size(db: Database) -> None:
    writer = GroupWriter(db, _insert, max_group=7)

    await _submit_all(writer, range(50))

    assert await _stored(db) == list(range(50))
    assert writer.transactions >= 50 // 7


async def test_submitting_without_the_writer_running_is_refused(db: Database) -> None:
    with pytest.raises(RuntimeError, match="running"):
        await GroupWriter(db, _insert).submit(1)


async def test_leases_asked_for_together_are_won_or_lost_each_on_its_own(db: Database) -> None:
    now, later, earlier = "2026-01-01T12:00:00Z", "2026-01-01T12:10:00Z", "2026-01-01T11:00:00Z"
    async with db.transaction() as conn:
        await leases.acquire_many(conn, [LeaseRequest("busy", "other", now, later)])
        await leases.acquire_many(conn, [LeaseRequest("stale", "crashed", earlier, earlier)])
    wanted = [
        LeaseRequest("free", "me", now, later),
        LeaseRequest("busy", "me", now, later),
        LeaseRequest("stale", "me", now, later),
    ]

    async with leases.acquirer(db).running() as acquirer, anyio.create_task_group() as tg:
        won: dict[str, bool] = {}

        async def ask(request: LeaseRequest) -> None:
            won[request.connection_id] = await acquirer.submit(request)

        for request in wanted:
            tg.start_soon(ask, request)

    assert won == {"free": True, "busy": False, "stale": True}
    assert await leases.holder_of(db, "busy") == ("other", later)
    assert await leases.holder_of(db, "stale") == ("me", later)


async def _held(steps: Sequence[tuple[str, list[tuple[int, ...]]]]) -> WriteBatch:
    batch = WriteBatch()
    for sql, rows in steps:
        await batch.execute_many(sql, rows)
    return batch


async def test_writes_held_in_a_batch_run_in_their_order_and_commit_with_the_transaction(
    db: Database, tmp_path: Path
) -> None:
    batch = await _held(
        [
            ("INSERT INTO scratch (v) VALUES (?)", [(1,), (2,)]),
            ("UPDATE scratch SET v = v + 10 WHERE v = ?", [(1,)]),  # the row just inserted
            ("INSERT INTO scratch (v) VALUES (?)", []),  # nothing to run: not held
            ("INSERT INTO scratch (v) VALUES (?)", [(3,)]),
        ]
    )
    assert len(batch.steps) == 3
    async with db.transaction() as conn:
        await conn.execute_batch(batch.steps)

    other = await SqliteDatabase.open_reader(tmp_path / "group.db")  # committed: seen apart
    try:
        async with other.reading() as conn:
            rows = await conn.fetch_all("SELECT v FROM scratch ORDER BY v")
    finally:
        await other.close()
    assert [r[0] for r in rows] == [2, 3, 11]


async def test_a_batch_with_a_refused_write_fails_with_the_stores_error_and_writes_nothing(
    db: Database,
) -> None:
    batch = await _held(
        [
            ("INSERT INTO scratch (v) VALUES (?)", [(5,)]),
            ("INSERT INTO scratch (v) VALUES (?)", [(6,), (-1,)]),  # the CHECK refuses -1
        ]
    )
    with pytest.raises(IntegrityViolation):
        async with db.transaction() as conn:
            await conn.execute_batch(batch.steps)

    assert await _stored(db) == []


async def test_a_read_and_a_batch_are_two_trips_to_sqlites_thread_begin_and_commit_included(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the aiosqlite the daemon ships with (`ONE_TRIP`), a transaction that reads and
    then writes a batch of several statements, as a group of a sync's writes does, makes
    two calls to aiosqlite's thread: the BEGIN with the read, the batch with the COMMIT.
    (Another aiosqlite would make a trip for each: slower, the same writes.)"""
    assert ONE_TRIP
    batch = await _held(
        [
            ("INSERT INTO scratch (v) VALUES (?)", [(7,), (8,)]),
            ("UPDATE scratch SET v = v + 1 WHERE v = ?", [(8,)]),
            ("INSERT INTO scratch (v) VALUES (?)", [(1,)]),
        ]
    )
    trips = counted_trips(monkeypatch)
    async with db.transaction() as conn:
        before = await conn.fetch_all("SELECT v FROM scratch")
        await conn.execute_batch(batch.steps)
    monkeypatch.undo()

    assert before == []
    assert len(trips) == 2
    assert await _stored(db) == [1, 7, 9]


async def test_a_read_that_fails_in_a_group_of_reads_fails_only_its_own_asker(
    db: Database,
) -> None:
    async def read(conn: Session, values: Sequence[int]) -> list[int]:
        found = await conn.fetch_each([("SELECT ? * 10", (v,)) for v in values])
        if -1 in values:
            raise StoreError("no such value")
        return [rows[0][0] for rows in found]

    results = await _submit_all(group_reader(db, read), [1, -1, 2])
    assert (results[1], results[2]) == (10, 20)
    assert isinstance(results[-1], StoreError)
