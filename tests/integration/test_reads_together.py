"""Several reads in one call (`Session.fetch_each`), as a group of a sync's writes reads its
leases and its listings: each read's rows in order, and inside a transaction they see what
it wrote, held writes included; on SQLite in one trip to its thread."""

from __future__ import annotations

import anyio
import pytest

from daemon.composition import Runtime
from daemon.store import listings
from daemon.store.group_commit import group_reader
from daemon.store.session import WriteBatch
from daemon.store.sqlite import SqliteDatabase
from tests.helpers import add_connection, closed_port_url, counted_trips, track

pytestmark = pytest.mark.both_databases

KEYS = "SELECT listing_key FROM listings WHERE connection_id = ? ORDER BY listing_key"
ERROR = "SELECT last_error FROM listings WHERE listing_key = ?"


async def test_reads_together_give_each_reads_rows_in_order(runtime: Runtime) -> None:
    await add_connection(runtime, closed_port_url())
    await track(runtime, "mls-1", ["B", "A", "C"])
    async with runtime.db.reading() as conn:
        keys, one, none = await conn.fetch_each(
            [(KEYS, ("mls-1",)), (ERROR, ("A",)), (KEYS, ("no such connection",))]
        )
    assert [r[0] for r in keys] == ["A", "B", "C"]
    assert [tuple(r) for r in one] == [(None,)]
    assert none == []


async def test_reads_together_in_a_transaction_see_its_held_writes(runtime: Runtime) -> None:
    await add_connection(runtime, closed_port_url())
    await track(runtime, "mls-1", ["A"])
    held = WriteBatch()
    await held.execute_many(
        "UPDATE listings SET last_error = ? WHERE listing_key = ?", [("x", "A")]
    )
    async with runtime.db.transaction() as conn:
        await conn.execute_batch(held.steps)
        (error,), (keys,) = await conn.fetch_each([(ERROR, ("A",)), (KEYS, ("mls-1",))])
    assert (error[0], keys[0]) == ("x", "A")


@pytest.mark.sqlite_only  # a trip to aiosqlite's thread is SQLite's
async def test_reads_together_are_one_trip_to_sqlites_thread(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_connection(runtime, closed_port_url())
    await track(runtime, "mls-1", ["A", "B"])
    assert isinstance(runtime.db, SqliteDatabase)
    trips = counted_trips(monkeypatch)
    async with runtime.db.reading() as conn:
        found = await conn.fetch_each([(KEYS, ("mls-1",)), (ERROR, ("B",))])
    monkeypatch.undo()
    assert len(trips) == 1
    assert [len(rows) for rows in found] == [2, 1]


async def _tracked_together(runtime: Runtime, ids: list[str]) -> dict[str, list[str]]:
    """`listings.tracked` of `ids`, asked for by a task each at once, as a run's connections
    starting together do: each connection's keys, by connection."""
    keys: dict[str, list[str]] = {}
    # On PostgreSQL the engine has each sync read its own (`Database.groups_reads`); the
    # reads in one go are checked on both all the same.
    reader = listings.tracked_reader(runtime.db) or group_reader(
        runtime.db, listings.tracked_of_each
    )

    async def ask(connection_id: str) -> None:
        keys[connection_id] = [t.listing_key for t in await reader.submit(connection_id)]

    async with reader.running(), anyio.create_task_group() as tg:
        for connection_id in ids:
            tg.start_soon(ask, connection_id)
    return keys


async def test_connections_asking_together_each_get_their_own_tracked_listings(
    runtime: Runtime,
) -> None:
    for n, keys in enumerate((["B", "A"], ["C"], [])):
        await add_connection(runtime, closed_port_url(), connection_id=f"mls-{n}")
        if keys:
            await track(runtime, f"mls-{n}", keys)
    assert await _tracked_together(runtime, ["mls-0", "mls-1", "mls-2"]) == {
        "mls-0": ["A", "B"],
        "mls-1": ["C"],
        "mls-2": [],
    }


@pytest.mark.sqlite_only
async def test_connections_asking_together_for_their_tracked_listings_make_one_trip(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        await add_connection(runtime, closed_port_url(), connection_id=f"mls-{n}")
        await track(runtime, f"mls-{n}", [f"K{n}"])
    trips = counted_trips(monkeypatch)
    found = await _tracked_together(runtime, ["mls-0", "mls-1", "mls-2"])
    monkeypatch.undo()
    assert len(trips) == 1
    assert found == {"mls-0": ["K0"], "mls-1": ["K1"], "mls-2": ["K2"]}
