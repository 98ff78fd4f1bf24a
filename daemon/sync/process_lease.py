"""A daemon's own lease, kept for as long as it lives: how daemons on other hosts tell that a
run it left `running` has no process behind it any more.

On one host a dead process is known at once (daemon/sync/holders.py asks the kernel). Across
hosts nothing can be asked: a run's holder on another VM is taken for dead once it holds no
unexpired lease at all (this one, renewed a third of the way to its expiry, or one of a
connection or of the unpublish pass) and its run began more than a lease time ago
(`orphaned_runs`). Its connections need no such rule: their own leases expire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import datetime, timedelta

import anyio
import structlog

from daemon.store import leases
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.sync.lease_keeping import RENEWALS_PER_TERM
from daemon.timestamps import iso, parse_iso

log = structlog.get_logger("mls_sync.leases")

PREFIX = "~process:"
RETRY_SECONDS = 2.0


async def keep(db: Database, holder: str, seconds: float, clock: Callable[[], datetime]) -> None:
    """Until cancelled: this process's lease, renewed; freed on the way out. A renewal that
    fails (the database away or busy) is logged and tried again within seconds, well before
    the lease runs out."""
    forgotten = False
    try:
        while True:
            try:
                if not forgotten:  # the leases of processes long gone
                    await leases.forget_expired(db, PREFIX, iso(clock()))
                    forgotten = True
                await db.measure_clock()  # the server's may have been set since
                until = iso(clock() + timedelta(seconds=seconds))
                await leases.put_own(db, PREFIX + holder, holder, until)
            except StoreError as exc:
                log.warning("process_lease_renewal_failed", error=str(exc))
                await anyio.sleep(RETRY_SECONDS)
                continue
            await anyio.sleep(seconds / RENEWALS_PER_TERM)
    finally:
        with anyio.CancelScope(shield=True), suppress(StoreError):
            await leases.release(db, PREFIX + holder, holder)


def orphaned_runs(
    running: Sequence[tuple[int, str, str]],
    leased: set[tuple[str, str]],
    now: datetime,
    lease_seconds: float,
    hostname: str,
    dead_here: Callable[[str], bool],
) -> list[int]:
    """The runs (id, holder, started) whose process is gone: on this host, as `dead_here`
    (the kernel) says; on another, one that holds no unexpired lease in `leased` and began
    more than a lease time ago (a run of the CLI keeps no lease of its own between its
    connections). Pure: the caller reads the runs, the leases and the clock."""
    alive = {_process_of(holder) for _, holder in leased}
    cutoff = now - timedelta(seconds=lease_seconds)
    return [
        run_id
        for run_id, holder, started in running
        if dead_here(holder)
        or (
            holder.partition(":")[0] != hostname
            and holder not in alive
            and parse_iso(started) < cutoff
        )
    ]


def _process_of(holder: str) -> str:
    """`host:pid` of a lease's holder (`host:pid`, or `host:pid:nonce`)."""
    return ":".join(holder.split(":")[:2])
