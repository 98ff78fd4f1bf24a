"""Several reads in one call (`Session.fetch_each`), as a group of a sync's writes reads its
leases and its listings: each read's rows in order, and inside a transaction they see what
it wrote, held writes included; on SQLite in one trip to its thread."""

from __future__ import annotations

import aiosqlite
import pytest

from daemon.composition import Runtime
from daemon.store.session import WriteBatch
from daemon.store.sqlite import SqliteDatabase
from tests.helpers import add_connection, closed_port_url, track

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
    trips: list[object] = []
    to_thread = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: object, *args: object) -> object:
        trips.append(fn)
        return await to_thread(self, fn, *args)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with runtime.db.reading() as conn:
        found = await conn.fetch_each([(KEYS, ("mls-1",)), (ERROR, ("B",))])
    monkeypatch.undo()
    assert len(trips) == 1
    assert [len(rows) for rows in found] == [2, 1]
