"""A transaction on SQLite in few trips to aiosqlite's thread: its BEGIN goes with its first
statement and its COMMIT with its held writes, and it still begins, commits and rolls back
as one transaction does (docs/benchmarks.md "A transaction's ends in its statements' trips")."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from daemon.store import sqlite
from daemon.store.errors import DatabaseBusy, IntegrityViolation
from daemon.store.session import WriteBatch
from daemon.store.sqlite import SqliteDatabase
from tests.helpers import counted_trips

INSERT = "INSERT INTO scratch (v) VALUES (?)"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await SqliteDatabase.open(tmp_path / "x.db", busy_timeout_ms=200)
    await database.conn.execute("CREATE TABLE scratch (v INTEGER NOT NULL CHECK (v >= 0))")
    yield database
    await database.close()


@pytest.fixture
def writer_elsewhere(db: SqliteDatabase) -> Iterator[sqlite3.Connection]:
    """Another connection to the file, as another process would hold it."""
    other = sqlite3.connect(db.path, timeout=0, isolation_level=None, check_same_thread=False)
    yield other
    other.close()


async def _stored(db: SqliteDatabase) -> list[int]:
    async with db.reading() as conn:
        return [r[0] for r in await conn.fetch_all("SELECT v FROM scratch ORDER BY v")]


def _batch(*values: int) -> WriteBatch:
    batch = WriteBatch()
    batch.steps.append((INSERT, [(v,) for v in values]))
    return batch


async def test_a_later_read_of_the_same_transaction_sees_its_held_writes(
    db: SqliteDatabase,
) -> None:
    async with db.transaction() as conn:
        await conn.execute_batch(_batch(3, 4).steps)
        seen = [r[0] for r in await conn.fetch_all("SELECT v FROM scratch ORDER BY v")]
        await conn.execute_batch(_batch(5).steps)
    assert seen == [3, 4]
    assert await _stored(db) == [3, 4, 5]


async def test_the_transaction_holds_the_write_lock_from_its_first_statement(
    db: SqliteDatabase, writer_elsewhere: sqlite3.Connection
) -> None:
    """BEGIN IMMEDIATE still comes before the first statement: once a transaction has read,
    no other connection can write until it ends (what the leases' fence relies on)."""
    async with db.transaction() as conn:
        await conn.fetch_all("SELECT v FROM scratch")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            writer_elsewhere.execute("INSERT INTO scratch (v) VALUES (1)")
    writer_elsewhere.execute("INSERT INTO scratch (v) VALUES (2)")  # free once it ended
    assert await _stored(db) == [2]


async def test_a_transaction_that_runs_nothing_makes_no_trip_to_the_thread(
    db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = counted_trips(monkeypatch)
    async with db.transaction():
        pass
    monkeypatch.undo()
    assert trips == []
    assert not db.conn.in_transaction


async def test_a_begin_that_fails_fails_every_statement_after_it_and_writes_nothing(
    db: SqliteDatabase, writer_elsewhere: sqlite3.Connection
) -> None:
    """Another process holds the write lock past the busy timeout: the first statement fails
    as busy, and so does any statement after it, even when the first error was caught. A
    statement run outside the transaction would commit on its own."""
    writer_elsewhere.execute("BEGIN IMMEDIATE")
    failed: list[DatabaseBusy] = []

    async def write_on_after_the_first_error() -> None:
        async with db.transaction() as conn:
            try:
                await conn.execute(INSERT, (1,))
            except DatabaseBusy as exc:
                failed.append(exc)
            writer_elsewhere.execute("ROLLBACK")  # the lock is free for the next statement
            await conn.execute(INSERT, (2,))

    with pytest.raises(DatabaseBusy):
        await write_on_after_the_first_error()
    assert len(failed) == 1
    assert await _stored(db) == []
    assert not db.conn.in_transaction


async def test_a_held_write_refused_at_commit_undoes_the_whole_transaction(
    db: SqliteDatabase,
) -> None:

    async def write_with_a_refused_one_held() -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, (1,))
            await conn.execute_batch(_batch(2, -1).steps)  # the CHECK refuses -1 at COMMIT

    with pytest.raises(IntegrityViolation):
        await write_with_a_refused_one_held()
    assert not db.conn.in_transaction
    async with db.transaction() as conn:  # the connection is free for the next one
        await conn.execute(INSERT, (3,))
    assert await _stored(db) == [3]


async def test_a_statement_cancelled_on_the_thread_has_its_transaction_rolled_back(
    tmp_path: Path,
) -> None:
    """A write waits on the thread for another process's lock (its BEGIN goes with it) and is
    cancelled; the lock comes free, so the BEGIN and the write run after all, on the thread,
    after the cancel. They are rolled back, not left open for the next user: the way out
    waits for them."""
    db = await SqliteDatabase.open(tmp_path / "x.db", busy_timeout_ms=10_000)
    other = sqlite3.connect(db.path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        await db.conn.execute("CREATE TABLE scratch (v INTEGER NOT NULL)")
        other.execute("BEGIN IMMEDIATE")
        # Free while the write still waits for it, after the cancel, before the busy timeout.
        threading.Timer(0.5, other.execute, ["ROLLBACK"]).start()
        started = anyio.current_time()
        with anyio.move_on_after(0.05) as waited:
            async with db.transaction() as conn:
                await conn.execute(INSERT, (1,))
        assert waited.cancelled_caught
        assert anyio.current_time() - started >= 0.5  # the rollback came behind the write
        assert not db.conn.in_transaction
        assert await _stored(db) == []
    finally:
        other.close()
        await db.close()


async def test_without_aiosqlites_private_method_a_transaction_still_commits_or_rolls_back(
    db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An aiosqlite that runs no function of ours: BEGIN and COMMIT make trips of their own,
    and a transaction still commits whole or not at all."""
    monkeypatch.setattr(sqlite, "ONE_TRIP", False)
    async with db.transaction() as conn:
        await conn.execute(INSERT, (1,))
        await conn.execute_batch(_batch(2).steps)

    async def write_with_a_refused_one() -> None:
        async with db.transaction() as conn:
            await conn.execute(INSERT, (3,))
            await conn.execute(INSERT, (-1,))

    with pytest.raises(IntegrityViolation):
        await write_with_a_refused_one()
    assert not db.conn.in_transaction
    assert await _stored(db) == [1, 2]
