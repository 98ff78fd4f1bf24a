"""One process at a time does a task on a database (the webhook deliveries, the mail):
`Database.alone`, on both databases. On PostgreSQL every daemon that shares the database
waits its turn, and a daemon that loses its connection gives the task up."""

from __future__ import annotations

import anyio
import pytest

from daemon.composition import Runtime, open_runtime
from daemon.store import postgres
from daemon.store.errors import StoreError
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.both_databases


async def test_a_second_process_waits_for_the_first_to_finish_the_task(
    runtime: Runtime, secret_key: str
) -> None:
    order: list[str] = []
    waited: list[str] = []
    # A second runtime: another process's handle on the same database.
    async with open_runtime(runtime.settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as other:

        async def second() -> None:
            async with other.db.alone("deliveries", lambda: waited.append("second")):
                order.append("second")

        async with (
            anyio.create_task_group() as tg,
            runtime.db.alone("deliveries", lambda: waited.append("first")),
        ):
            tg.start_soon(second)
            await anyio.sleep(1.0)  # the second asks again and again meanwhile
            order.append("first")
        # the first was done before the second's turn came
    assert order == ["first", "second"]
    assert waited == ["second"]  # said once, however long it waited


async def test_different_tasks_do_not_wait_for_each_other(runtime: Runtime) -> None:
    async with runtime.db.alone("deliveries", lambda: None):
        with anyio.fail_after(2):
            async with runtime.db.alone("mail", pytest.fail):
                pass


@pytest.mark.postgresql_only
async def test_a_process_whose_connection_dies_loses_its_turn_and_another_takes_it(
    runtime: Runtime,
    secret_key: str,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres, "TURN_CHECK_SECONDS", 0.2)
    cut_short = anyio.Event()

    async def hold_while_the_server_drops_the_connection() -> None:
        async with runtime.db.alone("mail", lambda: None):
            postgres_server.admin(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                f"WHERE locktype = 'advisory' AND classid = {postgres.TASK_LOCKS}"
            )
            try:
                await anyio.sleep(10)
            finally:
                cut_short.set()

    async with open_runtime(runtime.settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as other:
        with pytest.raises(StoreError, match="lost the database connection"):
            await hold_while_the_server_drops_the_connection()
        assert cut_short.is_set()  # the block was cancelled, not left running
        with anyio.fail_after(5):
            async with other.db.alone("mail", lambda: None):
                pass
