"""A daemon's own lease, kept for as long as it lives: how daemons on other hosts tell that it
died.

On one host a dead process is known at once (daemon/sync/holders.py asks the kernel). Across
hosts nothing can be asked: a daemon keeps a lease of its own instead, far shorter than a
connection's and renewed a third of the way to its expiry. Once it has run out (and is still
there: a daemon that stops frees it), the process is taken for gone: its connections' leases
are taken over and its runs ended, without waiting for their longer expiry. A daemon paused
past its term is taken for gone too; the fence keeps its late writes out, as for any lease
lost. Not its unpublish pass's lease: the platforms' DELETEs cannot be fenced, so that one is
taken only once it expires (daemon/sync/lease_keeping.py).

A run's holder that never kept such a lease (a run of the CLI), or whose lease was forgotten,
is taken for gone once it holds no unexpired lease at all and its run began more than a
connection's lease time ago (`orphaned_runs`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
import structlog
from anyio.abc import TaskStatus

from daemon.store import leases, runs
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.store.session import Session
from daemon.sync.holders import is_gone, on_this_host, process_of
from daemon.timestamps import iso, parse_iso

log = structlog.get_logger("mls_sync.leases")

PREFIX = "~process:"
RETRY_SECONDS = 2.0
RENEWALS_PER_TERM = 3
# Long enough that a busy database or a slow tick does not make a live daemon look gone;
# short enough that another host takes over well within a connection's lease.
LONGEST_TERM_SECONDS = 15.0


def term_seconds(lease_seconds: float) -> float:
    """How long a process's lease lasts: at most half a connection's lease."""
    return min(LONGEST_TERM_SECONDS, lease_seconds / 2)


@dataclass
class Witness:
    """What lets a daemon take another's process lease that ran out as its death: the lease
    was renewed while this daemon's own renewals went through, unbroken (`since`, by the
    database's clock), and then not for a term. After the database was away, every daemon's
    lease ran out at once: their last renewals came before this daemon's unbroken run began,
    so none is taken for dead; those that died meanwhile are left to their connection leases'
    expiry."""

    since: datetime
    term: float

    def saw_die(self, until: str, now: datetime) -> bool:
        expires = parse_iso(until)
        return expires < now and expires - timedelta(seconds=self.term) >= self.since


@dataclass
class ProcessLease:
    """This daemon's own lease, renewed for as long as it lives, and the `Witness` it is of
    the others' while its renewals go through."""

    db: Database
    holder: str
    lease_seconds: float
    clock: Callable[[], datetime]
    steady_from: datetime | None = None  # the database's time when the unbroken run began
    renewed_at: float = 0.0  # time.monotonic() when the last renewal that went through began

    @property
    def term(self) -> float:
        return term_seconds(self.lease_seconds)

    def witness(self) -> Witness | None:
        """None while this daemon's own lease is not known to run (a renewal failed, or took
        a term): it has not watched the others meanwhile."""
        if self.steady_from is None or time.monotonic() - self.renewed_at >= self.term:
            return None
        return Witness(self.steady_from, self.term)

    async def keep(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled: the lease, renewed a third of the way to its expiry; freed on the
        way out. Reports started once the first renewal was tried: the daemon starts its
        cycles after that. A renewal that fails (the database away or busy) is logged and
        tried again within seconds, well before the lease runs out."""
        forgotten = False
        try:
            while True:
                began = time.monotonic()
                try:
                    await self.db.measure_clock()  # the server's may have been set since
                    until = iso(self.clock() + timedelta(seconds=self.term))
                    await leases.put_own(self.db, PREFIX + self.holder, self.holder, until)
                    if not forgotten:
                        # The leases of processes long gone: kept a connection's lease time
                        # after they ran out, since until then they say a process died.
                        long_ago = self.clock() - timedelta(seconds=self.lease_seconds)
                        await leases.forget_expired(self.db, PREFIX, iso(long_ago))
                        forgotten = True
                except StoreError as exc:
                    self.steady_from = None
                    log.warning("process_lease_renewal_failed", error=str(exc))
                    pause = RETRY_SECONDS
                else:
                    # A renewal that went through a term after the last one broke the run as
                    # surely as one that failed.
                    if self.steady_from is None or time.monotonic() - self.renewed_at >= self.term:
                        self.steady_from = self.clock()
                    self.renewed_at = began
                    pause = self.term / RENEWALS_PER_TERM
                task_status.started()
                task_status = anyio.TASK_STATUS_IGNORED
                await anyio.sleep(pause)
        finally:
            # Bounded: a server that does not answer must not hold the daemon's stop.
            with anyio.move_on_after(5, shield=True), suppress(StoreError):
                await leases.release(self.db, PREFIX + self.holder, self.holder)


async def end_what_an_earlier_self_left(
    db: Database, holder: str, clock: Callable[[], datetime]
) -> None:
    """At a daemon's start, before it serves or syncs anything: what a process of its own
    identity (`holder`, `host:pid`) left. A daemon started under the host and pid of the one
    before it (a container's pid 1, a VM booted the same way) would take that one's runs
    and leases for its own, since the kernel says their pid lives: its runs would stay
    `running` for as long as it lives, its leases wait out their time. This process has
    begun nothing yet, so those are an earlier process's: its runs end `interrupted`, its
    leases (`host:pid:nonce`) are freed.

    Unless a live process has the same identity (replicas that share a host name, each
    pid 1): its own process lease, renewed within a term, says so. A lease of this identity
    still running is waited out, and read again: renewed meanwhile, it is a live twin's,
    whose work is left alone, with a warning (each daemon needs a host and pid of its
    own)."""
    own = PREFIX + holder
    left = await leases.holder_of(db, own)
    if left is not None and parse_iso(left[1]) >= clock():
        await anyio.sleep((parse_iso(left[1]) - clock()).total_seconds() + RETRY_SECONDS)
        again = await leases.holder_of(db, own)
        if again is not None and again[1] != left[1]:
            log.warning(
                "process_identity_shared",
                holder=holder,
                hint="another live daemon has this host name and pid: give each its own",
            )
            return
    now = iso(clock())
    ended = [run_id for run_id, of, _ in await runs.running(db) if of == holder]
    if ended:
        await runs.interrupt(db, ended, now)
    async with db.transaction() as conn:
        held = await leases.valid_in(conn, now)
        earlier = [(i, h) for i, h in held if h != holder and process_of(h) == holder]
        await leases.release_in(conn, earlier)
    if ended or earlier:
        log.info("earlier_process_ended", holder=holder, runs=len(ended), leases=len(earlier))


async def lapsed_processes(conn: Session, now: datetime, witness: Witness) -> frozenset[str]:
    """`host:pid` of each process `witness` saw die."""
    rows = await leases.with_prefix(conn, PREFIX)
    return frozenset(id.removeprefix(PREFIX) for id, until in rows if witness.saw_die(until, now))


async def lapsed_process(
    db: Database, holder: str, hostname: str | None, now: datetime, witness: Witness
) -> frozenset[str]:
    """`lapsed_processes` for the one process of `holder`: read only for another host's."""
    if on_this_host(holder, hostname):
        return frozenset()  # the kernel's word (holders.is_dead) is the one that counts here
    left = await leases.holder_of(db, PREFIX + process_of(holder))
    ran_out = left is not None and witness.saw_die(left[1], now)
    return frozenset({process_of(holder)}) if ran_out else frozenset()


def orphaned_runs(
    running: Sequence[tuple[int, str, str]],
    leased: set[tuple[str, str]],
    lapsed: frozenset[str],
    now: datetime,
    lease_seconds: float,
    hostname: str,
) -> list[int]:
    """The runs (id, holder, started) whose process is gone: as holders.is_gone says (the
    kernel here, `lapsed` elsewhere); or on another host, one that holds no unexpired lease
    in `leased` and began more than a lease time ago. Pure: the caller reads the runs, the
    leases and the clock."""
    alive = {process_of(holder) for _, holder in leased}
    cutoff = now - timedelta(seconds=lease_seconds)

    def orphaned(holder: str, started: str) -> bool:
        if is_gone(holder, hostname, lapsed):
            return True
        elsewhere = not on_this_host(holder, hostname)
        return elsewhere and holder not in alive and parse_iso(started) < cutoff

    return [run_id for run_id, holder, started in running if orphaned(holder, started)]
