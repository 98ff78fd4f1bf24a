"""Events mode between cycles: `mls-sync run` reads an events-mode connection's change log
every `poll_seconds`, so a sale is applied in seconds, not at the next 15-minute cycle; a
read that finds nothing costs one request and leaves no run (docs/mls-reso.md "The change
log")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from tests.e2e.daemon_process import Daemon, DaemonConfig
from tests.helpers import Mls, add_sandbox_connection, clock_cycles_half_a_slot_away


@pytest.fixture
async def events_daemon(daemon_config: DaemonConfig, mls: Mls) -> AsyncIterator[Daemon]:
    """The daemon (a cycle every 15 minutes) with one events-mode connection, polled every
    second, tracking K1 and K2."""
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1", "K2"], mode="events", poll_seconds=1)
        # Its runs are the polls': no clock cycle comes while the test looks at them.
        await clock_cycles_half_a_slot_away(rt.db, rt.settings.sync.interval_seconds)
    daemon = daemon_config.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)  # the cycle at start: the full pass, and the log's end
        yield daemon
    finally:
        daemon.stop()


async def _runs(daemon: Daemon) -> list[dict[str, Any]]:
    return list((await daemon.call("GET", "/v1/runs")).json()["items"])


async def test_a_sale_in_the_change_log_is_applied_in_seconds_without_waiting_for_the_cycle(
    events_daemon: Daemon, mls: Mls
) -> None:
    mls[0].set_status("K1", "Closed")

    with anyio.fail_after(10):
        while (await events_daemon.call("GET", "/v1/listings/L-K1")).json()["status"] != "sold":
            await anyio.sleep(0.1)

    newest = (await _runs(events_daemon))[0]
    assert (newest["trigger"], newest["scope"]) == ("poll", "connection:mls-1")
    assert (newest["status_changes"], newest["errors"]) == (1, 0)
    with anyio.fail_after(5):  # noted once the run has ended; /status is reused for 0.5 s
        while (await events_daemon.get("/status")).json()["change_log_polls"]["mls-1"][
            "last_run_id"
        ] != newest["id"]:
            await anyio.sleep(0.1)


async def test_reads_that_find_nothing_cost_one_request_each_and_leave_no_run(
    events_daemon: Daemon, mls: Mls
) -> None:
    sandbox = mls[0]
    asked_before = len(sandbox.filters)
    quiet_before = await events_daemon.metric("mls_sync_change_log_polls_total", outcome="quiet")

    with anyio.fail_after(10):
        while (
            quiet := await events_daemon.metric("mls_sync_change_log_polls_total", outcome="quiet")
        ) is None or quiet < (quiet_before or 0) + 3:
            await anyio.sleep(0.2)

    asked = sandbox.filters[asked_before:]
    after = await events_daemon.metric("mls_sync_change_log_polls_total", outcome="quiet")
    assert after is not None
    polls = after - (quiet_before or 0)
    assert polls <= len(asked) <= polls + 1  # one request per poll (and one under way, maybe)
    assert all(f.startswith("EntityEventSequence gt ") for f in asked)
    assert [r["id"] for r in await _runs(events_daemon)] == [1]  # the cycle at start, alone
    status = (await events_daemon.get("/status")).json()
    poll = status["change_log_polls"]["mls-1"]
    assert poll["last_outcome"] == "quiet" and 0 <= poll["next_in_seconds"] <= 1
