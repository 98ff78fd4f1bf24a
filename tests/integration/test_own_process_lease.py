"""A daemon's own process lease (daemon/sync/process_lease.py): kept in the database while it
lives, freed when it stops, and the judge of other processes only once its own renewals have
held for a term."""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio
import pytest

from daemon.composition import Runtime
from daemon.store import leases
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
