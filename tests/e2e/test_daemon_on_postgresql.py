"""The daemon on PostgreSQL, as systemd runs it: a subprocess on its config, its password
from the environment, asked over real HTTP while its database server goes away and comes
back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.daemon_process import Daemon, DaemonConfig
from tests.postgres_server import PostgresServer


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A server of this test's own: it is stopped and started again."""
    with PostgresServer.running() as server:
        yield server


async def test_readyz_fails_while_postgresql_is_down_and_passes_once_it_is_back(
    tmp_path: Path, daemon_config: DaemonConfig, server: PostgresServer
) -> None:
    daemon_config.add("database", url=server.new_database())
    daemon = daemon_config.start(env={"MLS_SYNC_DATABASE_PASSWORD": server.password})
    try:
        await daemon.wait_notify("READY=1")
        await _wait_for_readyz(daemon, 200)
        assert "postgresql:responseTime" in (await daemon.get("/readyz")).json()["checks"]
        assert not (tmp_path / "state").exists()  # no SQLite file: the state is the server's

        server.pause()
        down = await _wait_for_readyz(daemon, 503)
        assert "postgresql:responseTime" in down["output"]
        assert (await daemon.get("/livez")).status_code == 200  # alive, not ready

        server.resume()
        await _wait_for_readyz(daemon, 200)
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()
    # Every line for journald, the pool's own warnings too, is one JSON object.
    assert all(line.startswith("{") for line in daemon.log().splitlines()), daemon.log()


async def _wait_for_readyz(daemon: Daemon, code: int) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            answer = await daemon.get("/readyz")
            if answer.status_code == code:
                return dict(answer.json())
            await anyio.sleep(0.2)
