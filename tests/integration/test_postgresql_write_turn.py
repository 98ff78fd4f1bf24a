"""On PostgreSQL a process's writes take turns before they reach the server (one write
transaction of a process at a time). A write waits for its turn no longer than a lock is
waited for ([database] busy_timeout_ms): while the server is away, each writer ahead may wait
for a connection in its turn, and an API write queued behind them got no answer in time."""

from __future__ import annotations

import anyio
import pytest

from daemon.store.errors import DatabaseBusy
from daemon.store.postgres import PostgresDatabase
from tests.postgres_server import PostgresServer


async def test_a_write_waits_for_its_turn_no_longer_than_the_busy_timeout(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database()
    db = await PostgresDatabase.open(url, busy_timeout_ms=300, password=postgres_server.password)
    try:
        holding = anyio.Event()

        async def hold_the_turn() -> None:
            async with db.transaction():
                holding.set()
                await anyio.sleep(5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold_the_turn)
            await holding.wait()
            with pytest.raises(DatabaseBusy):  # before: the write waited the 5 s, then ran
                async with db.transaction() as session:
                    await session.execute("SELECT 1")
            tg.cancel_scope.cancel()
        async with db.transaction() as session:  # the turn is free again afterwards
            await session.execute("SELECT 1")
    finally:
        await db.close()
