"""Check tiers in the running daemon (docs/mls-reso.md "Check tiers"): its scheduled cycles ask
a by_key connection only for the listings whose tier is due, SIGUSR1 asks for all of them, and
/status and `connections show` say what each tier holds."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.sync.check_tiers import SCHEDULED_TRIGGERS
from daemon.timestamps import parse_iso
from tests.e2e.daemon_process import Daemon, DaemonConfig
from tests.e2e.test_admin_api import cli
from tests.helpers import Mls, add_connection, track

pytestmark = pytest.mark.slow

STATUSES = {"A1": "Active", "A2": "Active", "S1": "Closed", "S2": "Closed"}


@pytest.fixture
def tiers_config(tmp_path: Path, secret_key: str, platforms: tuple[object, str]) -> DaemonConfig:
    """Live listings asked every 10 s (so the scheduled cycle runs every 10 s), closed ones
    every hour, nothing recent."""
    config = DaemonConfig.write(tmp_path, platforms[1], secret_key, check_tiers=True)
    config.add(
        "check_intervals",
        recent_window_seconds=0,
        recent_seconds=10,
        pending_seconds=10,
        active_seconds=10,
        closed_seconds=3600,
    )
    return config


@pytest.fixture
async def tiers_daemon(tiers_config: DaemonConfig, mls: Mls) -> AsyncIterator[Daemon]:
    sandbox, url = mls
    for key, status in STATUSES.items():
        sandbox.put(key, status)
    async with tiers_config.runtime() as rt:
        await add_connection(rt, url, batch_size=1)  # a request per listing asked
        await track(rt, "mls-1", list(STATUSES))
    daemon = tiers_config.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)  # the cycle at start: every listing is new, so due
        yield daemon
    finally:
        daemon.stop()


async def _status(daemon: Daemon, key: str) -> str:
    return str((await daemon.call("GET", f"/v1/listings/L-{key}")).json()["status"])


async def test_the_scheduled_cycle_asks_only_for_due_listings_and_sigusr1_for_all(
    tiers_daemon: Daemon, mls: Mls
) -> None:
    sandbox = mls[0]
    assert (await tiers_daemon.get("/status")).json()["interval_seconds"] == 10
    sandbox.set_status("A1", "Closed")  # found by the next scheduled cycle
    sandbox.set_status("S1", "Active")  # not asked for an hour
    changed = datetime.now(UTC)

    # The first of the clock's cycles that asked for the live tier after the change (on a
    # loaded machine the cycle at start may end late enough that the next slot's finds
    # nothing due yet, and the slot's work may fall to its catch-up; on a slow one a slot's
    # cycle may have begun, and asked for A1, before the change: it changed nothing).
    scheduled = await tiers_daemon.wait_for_run(2, timeout=30)
    while scheduled["listings_checked"] == 0 or (
        parse_iso(scheduled["started_at"]) < changed and scheduled["status_changes"] == 0
    ):
        assert scheduled["trigger"] in SCHEDULED_TRIGGERS
        scheduled = await tiers_daemon.wait_for_run(scheduled["id"] + 1, timeout=30)

    assert scheduled["trigger"] in SCHEDULED_TRIGGERS
    # Its own count of requests: on a loaded machine it may have begun before this test
    # looked at the sandbox's.
    assert (scheduled["listings_checked"], scheduled["mls_requests"]) == (2, 2)
    assert await _status(tiers_daemon, "A1") == "sold"
    assert await _status(tiers_daemon, "S1") == "sold"

    tiers_daemon.send(signal.SIGUSR1)
    asked = await tiers_daemon.wait_for_run(scheduled["id"] + 1, timeout=30)

    assert (asked["trigger"], asked["listings_checked"]) == ("signal", 4)
    assert await _status(tiers_daemon, "S1") == "active"


async def test_status_and_connections_show_say_what_each_tier_holds_and_when_it_is_due(
    tiers_daemon: Daemon, tiers_config: DaemonConfig
) -> None:
    status = (await tiers_daemon.get("/status")).json()
    shown = json.loads(cli(tiers_config, "connections", "show", "mls-1", "--json"))
    table = cli(tiers_config, "connections", "show", "mls-1")

    for tiers in (status["check_tiers"], shown["check_tiers"]):
        assert {name: tier["listings"] for name, tier in tiers.items()} == {
            "unchecked": 0,
            "recent": 0,
            "pending": 0,
            "active": 2,
            "closed": 2,
        }
        active, closed = tiers["active"], tiers["closed"]
        assert (active["every_seconds"], closed["every_seconds"]) == (10, 3600)
        wait = parse_iso(closed["next_due"]) - parse_iso(active["next_due"])
        assert 3500 < wait.total_seconds() <= 3600
    assert "closed     2         3600" in table
