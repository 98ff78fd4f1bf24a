"""Webhooks end to end: `mls-sync run` in sandbox mode as a subprocess, an endpoint
registered over /v1, the sandbox market moving for a few cycles, and a receiver on loopback
that verifies every request with the `standardwebhooks` library: what /v1/events shows is
what the receiver got."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.sandbox.webhook_sink import Receiver, receiving
from daemon.service.delivery_child import REPORT_EVERY
from tests.e2e.daemon_process import Daemon

pytestmark = pytest.mark.slow


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as r:
        yield r


async def feed(daemon: Daemon) -> list[dict[str, Any]]:
    """Every event of the daemon's log, as GET /v1/events shows it, page after page."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await daemon.call("GET", f"/v1/events?after={after}&limit=500")).json()
        found += page["items"]
        if not page["items"]:
            return found
        after = page["next_after"]


async def test_every_event_reaches_the_receiver_in_order_with_valid_signatures(
    sandbox_daemon: Daemon, receiver: Receiver
) -> None:
    """Registered over the API from the first event on, the receiver gets every event of
    /v1/events at least once, in order, each body the event itself and each signature valid; the
    secret shows in the creating answer only, and SIGTERM stops the worker cleanly."""
    daemon = sandbox_daemon
    made = await daemon.call(
        "POST", "/v1/webhooks", json={"url": f"{receiver.url}/hooks", "after_event": 0}
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    receiver.secrets["/hooks"] = [secret]
    endpoint_id = made.json()["id"]

    refused = await daemon.call("POST", "/v1/webhooks", json={"url": "https://10.0.0.1/x"})
    assert refused.status_code == 422 and "private" in refused.json()["detail"]
    assert "10.0.0.1" not in refused.text

    first = await daemon.wait_for_run(1, timeout=60)
    await daemon.wait_for_run(first["id"] + 3, timeout=60)  # the market moves three times more
    expected = await feed(daemon)
    kinds = {e["type"] for e in expected}
    assert "run.finished" in kinds and any(k.startswith("listing.") for k in kinds)
    with anyio.fail_after(60):
        while not {e["id"] for e in expected} <= {r.event["id"] for r in receiver.at("/hooks")}:
            await anyio.sleep(0.1)

    got = receiver.at("/hooks")
    assert receiver.unverified() == []
    first_seen: list[int] = []
    for r in got:
        if r.event["id"] not in first_seen:
            first_seen.append(r.event["id"])
    assert first_seen == sorted(first_seen), "an event arrived before an earlier one"
    by_id = {r.event["id"]: r.event for r in got}
    for event in expected:
        assert by_id[event["id"]] == event
        assert f"evt_{event['id']}" in {r.webhook_id for r in got}

    shown = [
        (await daemon.call("GET", "/v1/webhooks")).text,
        (await daemon.call("GET", f"/v1/webhooks/{endpoint_id}")).text,
        (await daemon.call("GET", f"/v1/webhooks/{endpoint_id}/deliveries")).text,
    ]
    assert all(secret not in text for text in shown)
    with anyio.fail_after(10 * REPORT_EVERY):  # the child's counts come every REPORT_EVERY
        while not await daemon.metric("mls_sync_webhook_deliveries_total", result="delivered"):
            await anyio.sleep(0.1)
    lag = await daemon.metric(
        "mls_sync_webhook_oldest_undelivered_seconds", endpoint=str(endpoint_id)
    )
    assert lag is not None and lag < 60

    daemon.send(signal.SIGTERM)
    code, _ = await daemon.wait_exit(30)
    assert code == 0, daemon.log()
    assert secret not in daemon.log()
    assert secret.removeprefix("whsec_") not in daemon.log()


# -- the deliveries' process (daemon/service/delivery_process.py), found in /proc and killed


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


async def _delivery_child(daemon: Daemon) -> int:
    with anyio.fail_after(20):
        while True:
            for child in _children(daemon.proc.pid):
                if b"delivery_child" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return child
            await anyio.sleep(0.05)


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


async def _lowered(child: int, daemon: Daemon) -> None:
    """The child at [webhooks] niceness (10), or the daemon's own if nicer: the sync's CPU
    first. Set once it has read its job."""
    wanted = max(10, _niceness(daemon.proc.pid))
    with anyio.fail_after(20):
        while _niceness(child) != wanted:
            await anyio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
async def delivering(sandbox_daemon: Daemon, receiver: Receiver) -> tuple[Daemon, int]:
    """The sandbox daemon with an endpoint at the receiver, and its delivery process's pid."""
    made = await sandbox_daemon.call(
        "POST", "/v1/webhooks", json={"url": f"{receiver.url}/hooks", "after_event": 0}
    )
    assert made.status_code == 201, made.text
    receiver.secrets["/hooks"] = [made.json()["secret"]]
    return sandbox_daemon, await _delivery_child(sandbox_daemon)


async def test_no_delivery_process_runs_until_an_endpoint_is_added(
    sandbox_daemon: Daemon, receiver: Receiver
) -> None:
    """Nothing to deliver, no second process (its imports, its memory)."""
    await sandbox_daemon.wait_for_run(1, timeout=60)
    children = [Path(f"/proc/{c}/cmdline").read_bytes() for c in _children(sandbox_daemon.proc.pid)]
    assert not any(b"delivery_child" in c for c in children)
    assert "webhook_process_started" not in sandbox_daemon.log()
    made = await sandbox_daemon.call("POST", "/v1/webhooks", json={"url": f"{receiver.url}/h"})
    assert made.status_code == 201, made.text
    await _delivery_child(sandbox_daemon)
    with anyio.fail_after(20):
        while "webhook_process_started" not in sandbox_daemon.log():
            await anyio.sleep(0.1)


async def test_a_killed_delivery_process_is_started_again_at_low_priority_and_delivers(
    delivering: tuple[Daemon, int], receiver: Receiver
) -> None:
    daemon, first = delivering
    await _lowered(first, daemon)
    os.kill(first, signal.SIGKILL)
    with anyio.fail_after(20):
        while "webhook_process_exited" not in daemon.log():
            await anyio.sleep(0.1)
    second = await _delivery_child(daemon)
    assert second != first
    await _lowered(second, daemon)
    with anyio.fail_after(20):  # the new child says so once it delivers
        while "webhook_process_started" not in daemon.log().split("webhook_process_exited")[-1]:
            await anyio.sleep(0.1)

    run = await daemon.wait_for_run(1, timeout=60)
    await daemon.wait_for_run(run["id"] + 2, timeout=60)  # events made after the kill
    expected = {e["id"] for e in await feed(daemon)}
    with anyio.fail_after(60):
        while not expected <= {r.event["id"] for r in receiver.at("/hooks")}:
            await anyio.sleep(0.1)
    assert receiver.unverified() == []
    # The child reports its counts every REPORT_EVERY seconds, not as each one arrives (a
    # fresh-clone run read the metric between the last delivery and the report).
    with anyio.fail_after(10 * REPORT_EVERY):
        while not await daemon.metric("mls_sync_webhook_deliveries_total", result="delivered"):
            await anyio.sleep(0.1)


async def test_the_delivery_process_ends_with_the_daemon_even_a_killed_one(
    delivering: tuple[Daemon, int],
) -> None:
    """Left running, it would deliver beside the next daemon's own."""
    daemon, child = delivering
    daemon.send(signal.SIGKILL)
    await daemon.wait_exit(timeout=10)
    with anyio.fail_after(10):
        while _alive(child):
            await anyio.sleep(0.05)


async def test_sigterm_stops_the_daemon_and_its_delivery_process_cleanly(
    delivering: tuple[Daemon, int],
) -> None:
    """As systemd stops the unit: SIGTERM to every process of its group at once."""
    daemon, child = delivering
    daemon.send(signal.SIGTERM)
    os.kill(child, signal.SIGTERM)
    code, _ = await daemon.wait_exit(timeout=30)
    assert code == 0, daemon.log()
    assert not _alive(child)
    assert "webhook_process_exited" not in daemon.log()


async def test_a_reload_that_changes_the_log_level_starts_the_delivery_process_again_with_it(
    delivering: tuple[Daemon, int],
) -> None:
    """The delivery process logs as the daemon does, reloads included."""
    daemon, first = delivering
    config = daemon.log_path.parent / "config.toml"
    config.write_text(config.read_text() + '\n[logging]\nlevel = "debug"\n')
    daemon.send(signal.SIGHUP)
    with anyio.fail_after(20):
        while "webhook_process_renewed" not in daemon.log():
            await anyio.sleep(0.1)
    second = await _delivery_child(daemon)
    assert second != first and not _alive(first)
    assert "webhook_process_exited" not in daemon.log()
