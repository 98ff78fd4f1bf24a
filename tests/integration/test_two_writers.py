"""Two processes on one SQLite file: a sync that lost its lease must not write."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from daemon.composition import open_runtime
from daemon.sandbox.faults import Fault
from daemon.store import events, leases, runs
from daemon.store.records import RunRow
from tests.helpers import Mls, add_connection, cli_sync, make_settings, status_of, track, wait_until


@dataclass
class Thawed:
    """What the first process did once thawed, and what the database says afterwards."""

    returncode: int
    out: str
    seconds: float  # from SIGCONT to its exit
    run: RunRow
    problems: list[str]
    status: str | None
    events: list[tuple[str, int | None]]  # (type, run id) of every event about listing A


async def _frozen_past_its_lease(
    tmp_path: Path, secret_key: str, mls: Mls, answer_after: float, answered: bool
) -> Thawed:
    """Listing A is Pending at the MLS. A `mls-sync sync` asks for it, the MLS holds the
    answer `answer_after` seconds, and the process is frozen (SIGSTOP) as soon as it asked.
    `answered`: wait until the answer sits in its socket before the MLS moves A to Closed.
    Past its 30 s lease, a second process syncs the connection (A becomes sold), and then
    the first is thawed (SIGCONT)."""
    sandbox, url = mls
    sandbox.put("A", "Pending")
    env = {"MLS_SYNC_SYNC__LEASE_SECONDS": "30", "MLS_SYNC_MLS__TIMEOUT_SECONDS": "120"}
    settings = make_settings(tmp_path, **env)
    keys = {"MLS_SYNC_SECRET_KEY": secret_key}
    async with open_runtime(settings, keys) as rt:
        await add_connection(rt, url)
        await track(rt, "mls-1", ["A"], status="active")
    sandbox.faults.add(Fault("slow", seconds=answer_after))

    with cli_sync(tmp_path, secret_key, "--connection", "mls-1", **env) as first:
        await wait_until(lambda: sandbox.in_flight == 1)  # it asked the MLS...
        first.send_signal(signal.SIGSTOP)  # ...and freezes before it reads the answer
        if answered:
            await wait_until(lambda: sandbox.in_flight == 0)  # "Pending", in its socket
        sandbox.set_status("A", "Closed")
        await anyio.sleep(31)  # its lease expires
        async with open_runtime(settings, keys) as rt:
            second = await rt.engine.sync_connection("mls-1")
            assert (second.run.errors, await status_of(rt, "A")) == (0, "sold")
        first.send_signal(signal.SIGCONT)
        thawed = time.monotonic()
        # Polled, not waited for: the sandbox MLS answers from this event loop.
        await wait_until(lambda: first.poll() is not None, timeout=60)
        seconds = time.monotonic() - thawed
        out, err = first.communicate()

    async with open_runtime(settings, keys) as rt:
        first_run = min(await runs.recent(rt.db, 10), key=lambda r: r.id)
        problems = [e.message for e in await runs.errors_of(rt.db, first_run.id)]
        assert await leases.holder_of(rt.db, "mls-1") is None, err
        read = await events.after(rt.db, 0, None, None, 100)
        about_a = [(e.type, e.run_id) for e in read.rows if e.listing_id == "L-A"]
        status = await status_of(rt, "A")
        return Thawed(first.returncode, out, seconds, first_run, problems, status, about_a)


@pytest.mark.slow
async def test_a_sync_that_lost_its_lease_writes_nothing(
    tmp_path: Path, secret_key: str, mls: Mls
) -> None:
    """A sync process frozen past lease_seconds with an older MLS answer in hand, while a
    second process took the connection over and applied the newer status: once thawed, the
    first one's answer is not written (a sold listing never goes back to pending), and its
    run says that it lost the lease."""
    first = await _frozen_past_its_lease(tmp_path, secret_key, mls, 1.0, answered=True)

    assert first.status == "sold"
    assert (first.returncode, first.run.outcome, first.run.status_changes) == (0, "failed", 0)
    # The one change that committed is the one event: the second process's sale.
    assert first.events == [("listing.sold", first.run.id + 1)]
    assert any("lease lost" in p for p in first.problems), first.problems
    assert "lease lost" in first.out


@pytest.mark.slow
async def test_a_sync_that_lost_its_lease_stops_as_soon_as_it_runs_again(
    tmp_path: Path, secret_key: str, mls: Mls
) -> None:
    """Frozen past its lease while the MLS still holds its answer (45 s): once thawed, its
    next lease renewal finds the lease gone and stops the sync at once, without waiting for
    that answer."""
    first = await _frozen_past_its_lease(tmp_path, secret_key, mls, 45.0, answered=False)

    assert first.seconds < 10
    assert (first.returncode, first.run.outcome, first.run.listings_checked) == (0, "failed", 0)
    assert any("lease lost" in p for p in first.problems), first.problems
