"""A daemon's own process lease (daemon/sync/process_lease.py): kept in the database while it
lives, freed when it stops, and the judge of other processes only once its own renewals have
held for a term."""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio
import pytest

from daemon.composition import Runtime
from daemon.store import leases, runs
from daemon.sync.process_lease import PREFIX, ProcessLease
from daemon.timestamps import iso, parse_iso

pytestmark = pytest.mark.both_databases


async def test_a_daemon_keeps_its_process_lease_and_witnesses_from_its_first_renewal(
    runtime: Runtime,
) -> None:
    started = runtime.engine.clock()
    own = ProcessLease(runtime.db, "vm-a:101", 600, runtime.engine.clock)
    async with anyio.create_task_group() as tg:
        await tg.start(own.keep)
        held = await leases.holder_of(runtime.db, PREFIX + "vm-a:101")
        assert held is not None and held[0] == "vm-a:101"
        assert parse_iso(held[1]) > runtime.engine.clock()
        witness = own.witness()
        assert witness is not None and witness.since >= started
        tg.cancel_scope.cancel()
    assert await leases.holder_of(runtime.db, PREFIX + "vm-a:101") is None  # freed on stop


async def test_a_process_lease_left_by_a_dead_daemon_is_kept_a_lease_time_as_evidence(
    runtime: Runtime,
) -> None:
    """A daemon that starts forgets the process leases that ran out a lease time ago, and
    keeps the ones that ran out since: they are how the others know that process died."""
    now = runtime.engine.clock()
    await leases.put_own(runtime.db, PREFIX + "vm-b:7", "vm-b:7", _before(now, 5))
    await leases.put_own(runtime.db, PREFIX + "vm-c:8", "vm-c:8", _before(now, 700))
    own = ProcessLease(runtime.db, "vm-a:101", 600, runtime.engine.clock)
    async with anyio.create_task_group() as tg:
        await tg.start(own.keep)
        tg.cancel_scope.cancel()
    assert await leases.holder_of(runtime.db, PREFIX + "vm-b:7") is not None
    assert await leases.holder_of(runtime.db, PREFIX + "vm-c:8") is None


def _before(moment: datetime, seconds: float) -> str:
    return iso(moment - timedelta(seconds=seconds))


async def test_a_daemon_restarted_under_its_last_pid_ends_what_that_one_left(
    runtime: Runtime,
) -> None:
    """A daemon restarted with the host and pid of the one before (a container's pid 1, a
    VM booted the same way) would take that one's run and leases for its own: the run would
    stay `running` for as long as it lives, the leases wait out their time. Taking its
    process lease at start, it ends them; another process's are left."""
    now = runtime.engine.clock()
    earlier = await runs.start(runtime.db, "schedule", "all", "vm-a:101", iso(now))
    other = await runs.start(runtime.db, "schedule", "all", "vm-a:102", iso(now))
    later = iso(now + timedelta(seconds=600))
    for holder, connection in (("vm-a:101:0a1b2c3d", "one"), ("vm-a:102:0a1b2c3d", "two")):
        taken = leases.LeaseRequest(connection, holder, iso(now), later)
        assert await leases.acquire(runtime.db, taken)

    own = ProcessLease(runtime.db, "vm-a:101", 600, runtime.engine.clock)
    async with anyio.create_task_group() as tg:
        await tg.start(own.keep)
        tg.cancel_scope.cancel()

    outcomes = [await runs.get(runtime.db, run_id) for run_id in (earlier, other)]
    assert [r.outcome if r else None for r in outcomes] == ["interrupted", "running"]
    assert await leases.holder_of(runtime.db, "one") is None
    assert await leases.holder_of(runtime.db, "two") is not None
