"""The unpublish lease: one reconciler at a time, across processes, for as long as its pass
runs (invariant 3, for posts).

Taken before a pass, renewed a third of the way to its expiry while the pass runs, and checked
inside the transaction of every write the pass makes (fencing). A reconciler paused past its
lease (a GC pause, a frozen VM, a suspended process) has lost it, even if nobody took it yet:
its renewal fails, it writes nothing more, and its pass stops; the next pass finds what it left.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiosqlite
import anyio
import structlog

from daemon.clock import iso
from daemon.store import leases
from daemon.store.database import Database
from daemon.sync.holders import is_dead, this_process

log = structlog.get_logger("mls_sync.unpublish")

# The lease's row in sync_leases (not a connection id).
LEASE = "~unpublish"
LEASE_SECONDS = 600


def _new_holder() -> str:
    return f"{this_process()}:{uuid.uuid4().hex[:8]}"


@dataclass
class UnpublishLease:
    db: Database
    clock: Callable[[], datetime]
    seconds: float
    holder: str = field(default_factory=_new_holder)
    lost: bool = False
    # Stops the pass the lease guards; set by `keep`.
    stop_pass: Callable[[], None] = field(default=lambda: None)

    async def acquire(self) -> bool:
        now = self.clock()
        until = iso(now + timedelta(seconds=self.seconds))
        if await leases.acquire(self.db, LEASE, self.holder, iso(now), until):
            return True
        current = await leases.holder_of(self.db, LEASE)
        if current is not None and is_dead(current[0]):
            return await leases.take_over(self.db, LEASE, current[0], self.holder, until)
        return False

    async def keep(self, stop_pass: Callable[[], None]) -> None:
        """Renews the lease until cancelled; if it was lost, stops the pass at once."""
        self.stop_pass = stop_pass
        while not self.lost:
            await anyio.sleep(self.seconds / 3)
            now = self.clock()
            until = iso(now + timedelta(seconds=self.seconds))
            if not await leases.renew_held(self.db, LEASE, self.holder, iso(now), until):
                self._lose()

    async def held_in(self, conn: aiosqlite.Connection) -> bool:
        """In the transaction of a write: whether it may go ahead."""
        if not self.lost and not await leases.still_held(
            conn, LEASE, self.holder, iso(self.clock())
        ):
            self._lose()
        return not self.lost

    async def release(self) -> None:
        await leases.release(self.db, LEASE, self.holder)

    def _lose(self) -> None:
        if not self.lost:
            log.error("unpublish_lease_lost", holder=self.holder)
        self.lost = True
        self.stop_pass()
