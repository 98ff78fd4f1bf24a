"""The daemon on PostgreSQL, as systemd runs it: a subprocess on its config, its password
from the environment, asked over real HTTP while its database server goes away and comes
back."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from daemon.composition import open_runtime
from daemon.service.push_routes import PUSH_PATH
from tests.e2e.daemon_process import Daemon, DaemonConfig
from tests.helpers import Mls, Platforms, add_sandbox_connection
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

PUSH = PUSH_PATH.format(connection_id="mls-1")


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


async def test_a_push_or_an_api_call_while_postgresql_is_down_is_a_503_to_send_again(
    daemon_config: DaemonConfig, server: PostgresServer, mls: Mls
) -> None:
    """The MLS's push and the API's callers are told to send again later (503 with
    Retry-After), as for a database too busy: nothing is wrong with what they sent. Before,
    the push got 500, which a sender reads as its own request's fault."""
    daemon_config.add("database", url=server.new_database())
    env = {"MLS_SYNC_DATABASE_PASSWORD": server.password}
    seeding = {"MLS_SYNC_SECRET_KEY": daemon_config.secret_key, **env}
    async with open_runtime(daemon_config.settings(), seeding) as rt:
        await add_sandbox_connection(rt, mls, ["K1"], mode="events", poll_seconds=3600)
    daemon = daemon_config.start(env=env)
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1, timeout=30)  # the outage is the calls', not the run's
        made = await daemon.call("POST", "/v1/mls-connections/mls-1/push-token")
        token = str(made.json()["push_token"])

        server.pause()
        answers = [await _push(daemon, token), await daemon.call("GET", "/v1/listings")]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "5"  # a server's return, not a lock's
            assert answer.headers["content-type"] == "application/problem+json"
            assert "cannot be reached" in answer.json()["detail"]

        server.resume()
        with anyio.fail_after(30):  # a pooled connection that died may fail once more
            while (await _push(daemon, token)).status_code != 200:
                await anyio.sleep(0.2)
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()
    said = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    unavailable = [line for line in said if line["event"] == "database_unavailable"]
    routes = [line["route"] for line in unavailable]
    assert routes[:2] == [PUSH_PATH, "/v1/listings"]
    assert set(routes[2:]) <= {PUSH_PATH}  # the pushes sent again as the server came back


async def _push(daemon: Daemon, token: str) -> httpx.Response:
    event = {"EntityEventSequence": 1, "ResourceName": "Property", "ResourceRecordKey": "K1"}
    return await daemon.call("POST", PUSH, token=token, json=event)


async def _wait_for_readyz(daemon: Daemon, code: int) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            answer = await daemon.get("/readyz")
            if answer.status_code == code:
                return dict(answer.json())
            await anyio.sleep(0.2)


async def test_the_daemon_stops_promptly_while_postgresql_is_frozen(
    tmp_path: Path, secret_key: str, platforms: Platforms, server: PostgresServer, mls: Mls
) -> None:
    """A database server that stops answering without closing its connections (a frozen VM,
    a cut network) must not hold the daemon's stop until systemd's SIGKILL: the ends of the
    transactions under way wait for it a bounded time, then their connections are dropped."""
    daemon_config = DaemonConfig.write(tmp_path, platforms[1], secret_key, grace=1)
    daemon_config.add("database", url=server.new_database())
    env = {"MLS_SYNC_DATABASE_PASSWORD": server.password}
    seeding = {"MLS_SYNC_SECRET_KEY": daemon_config.secret_key, **env}
    async with open_runtime(daemon_config.settings(), seeding) as rt:
        await add_sandbox_connection(rt, mls, [f"K{n}" for n in range(20)])
    daemon = daemon_config.start(env=env)
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1, timeout=30)
        try:
            server.freeze()
            async with anyio.create_task_group() as calls:
                # Transactions under way on the frozen server: a sync, and the API's reads.
                calls.start_soon(_call_ignoring_timeouts, daemon, "POST", "/v1/sync")
                calls.start_soon(_call_ignoring_timeouts, daemon, "GET", "/v1/listings")
                await anyio.sleep(2)
                daemon.send(signal.SIGTERM)
                code, seconds = await daemon.wait_exit(timeout=60)
                calls.cancel_scope.cancel()
        finally:
            server.thaw()
    finally:
        daemon.stop()
    print(f"\nstopped in {seconds:.1f} s with PostgreSQL frozen, exit code {code}")
    # Half the unit's TimeoutStopSec (60 s), after which systemd sends SIGKILL: a transaction's
    # end waits 10 s, a pooled connection as long.
    assert seconds < 30, daemon.log()
    assert code == 0, daemon.log()
    assert "Traceback" not in daemon.log()


async def _call_ignoring_timeouts(daemon: Daemon, method: str, path: str) -> None:
    with suppress(httpx.HTTPError):
        await daemon.call(method, path)
