"""A daemon's own process lease (daemon/sync/process_lease.py): kept in the database while it
lives, freed when it stops, and the judge of other processes only once its own renewals have
held for a term."""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio
import pytest

from daemon.composition import Runtime
from daemon.store import leases, runs
from daemon.sync.process_lease import PREFIX, ProcessLease, end_what_an_earlier_self_left
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


async def _left_by(runtime: Runtime, holder: str) -> tuple[int, int]:
    """A run `running` and a connection lease held under `holder`, and the same of another
    process of the host ("vm-a:102"): the ids of the two runs."""
    now = runtime.engine.clock()
    mine = await runs.start(runtime.db, "schedule", "all", holder, iso(now))
    other = await runs.start(runtime.db, "schedule", "all", "vm-a:102", iso(now))
    later = iso(now + timedelta(seconds=600))
    for lease_holder, connection in ((f"{holder}:0a1b2c3d", "one"), ("vm-a:102:0a1b2c3d", "two")):
        assert await leases.acquire(
            runtime.db, leases.LeaseRequest(connection, lease_holder, iso(now), later)
        )
    return mine, other


async def _outcomes(runtime: Runtime, *run_ids: int) -> list[str | None]:
    return [r.outcome if r else None for r in [await runs.get(runtime.db, i) for i in run_ids]]


async def test_a_daemon_restarted_under_its_last_pid_ends_what_that_one_left(
    runtime: Runtime,
) -> None:
    """A daemon restarted with the host and pid of the one before (a container's pid 1, a
    VM booted the same way) would take that one's run and leases for its own: the run would
    stay `running` for as long as it lives, the leases wait out their time. At its start,
    once that one's process lease has run out, it ends them; another process's are left."""
    earlier, other = await _left_by(runtime, "vm-a:101")
    soon = iso(runtime.engine.clock() + timedelta(seconds=1))
    await leases.put_own(runtime.db, PREFIX + "vm-a:101", "vm-a:101", soon)  # its last renewal

    await end_what_an_earlier_self_left(runtime.db, "vm-a:101", runtime.engine.clock)

    assert await _outcomes(runtime, earlier, other) == ["interrupted", "running"]
    assert await leases.holder_of(runtime.db, "one") is None
    assert await leases.holder_of(runtime.db, "two") is not None


async def test_a_live_daemon_of_the_same_host_and_pid_keeps_its_work(runtime: Runtime) -> None:
    """Two replicas that share a host name, each pid 1: the one starting finds the other's
    process lease renewed while it waits, and leaves its run and leases alone."""
    live, _ = await _left_by(runtime, "vm-a:1")
    twin = ProcessLease(runtime.db, "vm-a:1", 3, runtime.engine.clock)  # renewed each second
    async with anyio.create_task_group() as tg:
        await tg.start(twin.keep)
        await end_what_an_earlier_self_left(runtime.db, "vm-a:1", runtime.engine.clock)
        tg.cancel_scope.cancel()

    assert await _outcomes(runtime, live) == ["running"]
    assert await leases.holder_of(runtime.db, "one") is not None
