"""The unpublish lease: one reconciler at a time, across processes, for as long as its pass
runs (invariant 3, for posts).

Taken before a pass, renewed a third of the way to its expiry while the pass runs, and checked
inside the transaction of every write the pass makes (fencing), and right before every DELETE
(by the monotonic clock: a term since the last renewal that ran out). A reconciler paused past
its lease (a GC pause, a frozen VM, a suspended process) has lost it, even if nobody took it
yet: it sends and writes nothing more, and its pass stops (a DELETE already out is let
finish: `_Pass.stop_waiting`); the next pass finds what it left.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import structlog

from daemon.store import leases
from daemon.store.database import Database
from daemon.store.session import Session
from daemon.sync import lease_keeping
from daemon.sync.holders import this_process
from daemon.timestamps import iso

log = structlog.get_logger("mls_sync.unpublish")

# The lease's row in sync_leases (not a connection id).
LEASE = "~unpublish"


def _new_holder() -> str:
    return f"{this_process()}:{uuid.uuid4().hex[:8]}"


@dataclass
class UnpublishLease:
    db: Database
    clock: Callable[[], datetime]
    seconds: float
    holder: str = field(default_factory=_new_holder)
    lost: bool = False
    # time.monotonic() at which the term since the last renewal (or the taking) runs out.
    deadline: float = 0.0
    # Stops what the pass the lease guards still waits for; set by `keep`.
    stop_pass: Callable[[], None] = field(default=lambda: None)

    async def acquire(self) -> bool:
        started, now = time.monotonic(), self.clock()
        until = iso(now + timedelta(seconds=self.seconds))
        wanted = leases.LeaseRequest(LEASE, self.holder, iso(now), until)
        won = await lease_keeping.take(self.db, wanted, partial(leases.acquire, self.db))
        if won:
            self.deadline = started + self.seconds
        return won

    async def keep(self, stop_pass: Callable[[], None]) -> None:
        """Renews the lease until cancelled (lease_keeping has the rules); if it was lost,
        stops what the pass still waits for at once (`stop_pass`)."""
        self.stop_pass = stop_pass
        await lease_keeping.keep(self.seconds, self._held, self._renew, lambda _: self._lose())

    def _held(self) -> dict[str, str]:
        return {} if self.lost else {LEASE: self.holder}

    async def _renew(self, asked: Mapping[str, str]) -> set[str]:
        started, now = time.monotonic(), self.clock()
        until = iso(now + timedelta(seconds=self.seconds))
        if not await leases.renew_held(self.db, LEASE, asked[LEASE], iso(now), until):
            return set()
        self.deadline = started + self.seconds
        return {LEASE}

    def still_running(self) -> bool:
        """Right before a call the lease guards, outside any transaction: whether its term
        has not run out since it was last renewed. Timed from before that renewal was asked
        (it is never later than the expiry the database holds), by the monotonic clock, so a
        pause counts in full; a renewal held up (a database lock) does not extend it."""
        if not self.lost and time.monotonic() >= self.deadline:
            log.error("lease_lost", lease=LEASE, holder=self.holder, why="its term ran out")
            self._lose()
        return not self.lost

    async def held_in(self, conn: Session) -> bool:
        """In the transaction of a write: whether it may go ahead."""
        if not self.lost and not await leases.still_held(
            conn, LEASE, self.holder, iso(self.clock())
        ):
            log.error("lease_lost", lease=LEASE, holder=self.holder, why="refused by the fence")
            self._lose()
        return not self.lost

    async def release(self) -> None:
        await leases.release(self.db, LEASE, self.holder)

    def _lose(self) -> None:
        self.lost = True
        self.stop_pass()
