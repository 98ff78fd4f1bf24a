"""Crash consistency of webhook deliveries: the daemon is killed with SIGKILL at random
moments of its cycles while its events are being delivered to a (slowish) receiver on
loopback, then restarted until everything is delivered. No event is lost, none arrives out of
order for the first time, every signature verifies; an event arrives twice only when a kill
fell between its sending and the record of its answer, and those are sent again in order: at
most one replay per kill (counted and printed).

Short by default (5 rounds, 200 listings). The full run:
    MLS_SYNC_CRASH_ROUNDS=50 .venv/bin/pytest tests/reliability/test_crash_webhooks.py -s
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3

import anyio
import pytest

from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.webhooks import EndpointSpec
from daemon.sandbox.webhook_sink import receiving
from tests.e2e.daemon_process import DaemonConfig
from tests.helpers import Mls, add_sandbox_connection

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("MLS_SYNC_CRASH_ROUNDS", "5"))
LISTINGS = int(os.environ.get("MLS_SYNC_CRASH_LISTINGS", "200"))
STATUSES = ["Active", "Active Under Contract", "Pending", "Closed", "Withdrawn", "Coming Soon"]


def _caught_up(database: str) -> bool:
    """Whether the endpoint has taken every event and delivered all it took."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        last = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        cursor = db.execute("SELECT cursor FROM webhook_endpoints").fetchone()[0]
        pending = db.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE state != 'delivered'"
        ).fetchone()[0]
    return bool(cursor == last and pending == 0)


async def test_sigkill_with_deliveries_in_flight_loses_none_and_keeps_their_order(
    mls: Mls, daemon_config: DaemonConfig
) -> None:
    sandbox = mls[0]
    rng = random.Random(20261130)
    keys = [f"W{n:05d}" for n in range(LISTINGS)]
    text = daemon_config.path.read_text()
    daemon_config.path.write_text(text + "[webhooks]\nallow_http_loopback = true\n")
    async with receiving() as receiver:
        receiver.slow["/hooks"] = 0.01  # deliveries stay in flight a while
        async with daemon_config.runtime() as rt:
            await add_sandbox_connection(rt, mls, keys, rate_per_second=50.0, batch_size=25)
            ctx = OpsContext(rt.db, rt.box, webhooks=rt.settings.effective_webhooks())
            _, secret = await Operations.on(ctx).webhooks.create(
                EndpointSpec(f"{receiver.url}/hooks", after_event=0)
            )
        receiver.secrets["/hooks"] = [secret]

        killed_in_flight = 0
        for _ in range(ROUNDS):
            for key in rng.sample(keys, max(1, LISTINGS // 10)):
                sandbox.set_status(key, rng.choice(STATUSES))
            daemon = daemon_config.start()
            try:
                await daemon.wait_notify("READY=1")
                await anyio.sleep(rng.uniform(0.2, 1.5))
                daemon.send(signal.SIGKILL)
                code, _ = await daemon.wait_exit(timeout=10)
                assert code == -signal.SIGKILL
                killed_in_flight += int(not _caught_up(str(daemon_config.database)))
            finally:
                daemon.stop()

        recovery = daemon_config.start()
        try:
            await recovery.wait_notify("READY=1")
            with anyio.fail_after(120):
                while not _caught_up(str(daemon_config.database)):
                    await anyio.sleep(0.2)
            recovery.send(signal.SIGTERM)
            assert (await recovery.wait_exit(timeout=30))[0] == 0
        finally:
            recovery.stop()

    with sqlite3.connect(daemon_config.database) as db:
        committed = [r[0] for r in db.execute("SELECT id FROM events ORDER BY id")]
    arrived = [r.event["id"] for r in receiver.at("/hooks")]
    duplicates = len(arrived) - len(set(arrived))
    first_arrivals = list(dict.fromkeys(arrived))
    replays = _replays(arrived)
    print(
        f"\nwebhook crash consistency: {ROUNDS} SIGKILLs ({killed_in_flight} with deliveries "
        f"outstanding), {len(committed)} events, {len(arrived)} requests, {duplicates} "
        f"duplicates in {len(replays)} replays, "
        f"{sum(1 for a, b in itertools.pairwise(first_arrivals) if b < a)} out of order, "
        f"{len(receiver.unverified())} bad signatures"
    )
    assert set(committed) <= set(arrived), "an event never reached the receiver"
    assert first_arrivals == sorted(first_arrivals), "an event arrived after a later one"
    # A kill can only lose the record of events already answered: they are sent again, in
    # order, once per kill at most (daemon/outbound/recording.py).
    assert all(replayed for replayed in replays), "a replay brought an event never sent"
    assert len(replays) <= ROUNDS
    assert receiver.unverified() == []
    assert killed_in_flight >= 1  # the kills really did cut deliveries short


def _replays(arrived: list[int]) -> list[bool]:
    """One entry per time the arrivals went back (or repeated an event): whether the event
    they went back to had arrived before."""
    found: list[bool] = []
    seen: set[int] = set()
    for previous, current in itertools.pairwise([0, *arrived]):
        if current <= previous:
            found.append(current in seen)
        seen.add(current)
    return found
