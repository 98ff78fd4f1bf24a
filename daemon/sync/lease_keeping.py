"""Taking leases and keeping them while the work they guard runs: the rules the sync of
connections and the unpublish reconciler share.

A lease is renewed a third of the way to its expiry. A renewal that fails on a database error
(another process holding the write lock, say) does not end the work: it is logged and tried
again at the next tick, well before the expiry; if the lease does expire meanwhile, the fence
keeps the work's writes out. A renewal the database refuses means the lease was lost (this
process was paused past its expiry, or another took it over): its work stops at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import anyio
import structlog

from daemon.store import leases
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.sync import process_lease
from daemon.sync.holders import is_gone
from daemon.timestamps import parse_iso

log = structlog.get_logger("mls_sync.leases")

RENEWALS_PER_TERM = 3


async def keep(
    seconds: float,
    held: Callable[[], Mapping[str, str]],
    renew: Callable[[Mapping[str, str]], Awaitable[set[str]]],
    lost: Callable[[str], None],
) -> None:
    """Until cancelled: renews the leases `held()` names (lease id -> holder) with `renew`,
    which returns the ids it renewed; `lost(id)` for each other one its holder still holds."""
    while True:
        await anyio.sleep(seconds / RENEWALS_PER_TERM)
        asked = dict(held())
        if not asked:
            continue
        try:
            renewed = await renew(asked)
        except StoreError as exc:
            log.warning("lease_renewal_failed", leases=sorted(asked), error=str(exc))
            continue
        for lease_id, holder in asked.items():
            if lease_id not in renewed and held().get(lease_id) == holder:
                log.error("lease_lost", lease=lease_id, holder=holder)
                lost(lease_id)


async def take(
    db: Database,
    wanted: leases.LeaseRequest,
    acquire: Callable[[leases.LeaseRequest], Awaitable[bool]],
    hostname: str | None = None,
    witness: process_lease.Witness | None = None,
) -> bool:
    """The one way a lease is taken, by the sync of a connection and by the unpublish pass:
    free or expired, by `acquire` (alone, or in a group of requests); held by a process that
    no longer runs, taken over at once instead of waiting for its expiry: on this host as
    the kernel says; on another, given a `witness`, when it saw its process lease run out
    (daemon/sync/process_lease.py; only for leases whose work is fenced write by write).
    False while a live holder has it."""
    return await acquire(wanted) or await _take_from_dead(db, wanted, hostname, witness)


async def _take_from_dead(
    db: Database,
    wanted: leases.LeaseRequest,
    hostname: str | None,
    witness: process_lease.Witness | None,
) -> bool:
    current = await leases.holder_of(db, wanted.connection_id)
    if current is None:
        return False
    lapsed: frozenset[str] = frozenset()
    if witness is not None:
        now = parse_iso(wanted.now)
        lapsed = await process_lease.lapsed_process(db, current[0], hostname, now, witness)
    if not is_gone(current[0], hostname, lapsed):
        return False
    log.warning("lease_taken_over", lease=wanted.connection_id, previous_holder=current[0])
    return await leases.take_over(
        db,
        wanted.connection_id,
        current[0],
        wanted.holder,
        wanted.until,
        wanted.unless_synced_in,
    )
