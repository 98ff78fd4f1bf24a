"""The sync cycle: `sync_all`, `sync_user`, `sync_connection` and `sync_listing`.

Each call is one run in the sync history. Connections run with bounded concurrency, each under
a lease so that no connection is ever synced twice at once, also from another process.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import nullcontext, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import anyio
import structlog

from daemon.config import Settings
from daemon.enums import AccountState, ConnectionState, QueryMode
from daemon.errors import Conflict, NotFound
from daemon.failures import log_failure
from daemon.mls.errors import CircuitOpen, ConnectionStopped, MlsError, NeedsReauth
from daemon.models import LocalStatus
from daemon.store import accounts, connections, leases, listings, posts, pushed_events, runs
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.store.group_commit import GroupWriter
from daemon.store.posts import DueScope
from daemon.store.records import ConnectionRow, ListingRow, RunErrorRow, RunRow, TrackedListing
from daemon.store.runs import Counts, ErrorEntry
from daemon.store.session import Session
from daemon.store.until_written import until_written
from daemon.sync import check_tiers, lease_keeping, process_lease
from daemon.sync.access import MlsAccess
from daemon.sync.connection import CLOCK_SKEW, ConnectionSync
from daemon.sync.cycle_slots import SHARED_TRIGGERS, slot_bounds, slot_start, synced_in_slot
from daemon.sync.holders import is_dead, is_gone, this_process
from daemon.sync.sync_writer import SyncWriter, writer
from daemon.sync.sync_writes import ConnectionDone, LeaseLost, lease_lost
from daemon.sync.unpublish import PostResult, Unpublisher
from daemon.sync.unpublish_lease import LEASE as UNPUBLISH_LEASE
from daemon.timestamps import iso, parse_iso, utcnow

log = structlog.get_logger("mls_sync.sync")

# Pushed events one run applies at most; more waiting are the next run's (the queue is read
# in order, so none waits forever).
PUSHED_PER_RUN = 10_000

POLL = "poll"  # the trigger of a run that a read of the change log between cycles started

# The connection whose run between cycles (a read of its change log, an apply of its pushed
# events) the current task belongs to. Such a run that finds the connection's lease taken
# must not wait for a run between cycles to end: that run is itself, and it waited for its
# own end, a whole lease time.
_BETWEEN_CYCLES_OF: ContextVar[str | None] = ContextVar("between_cycles_of", default=None)


class SyncRefused(Conflict):
    """The sync cannot start (paused, excluded, busy); the message says why."""


@dataclass
class RunReport:
    run: RunRow
    errors: list[RunErrorRow] = field(default_factory=list)
    posts: list[PostResult] = field(default_factory=list)
    posts_due: int = 0  # still due after the run: waiting for a retry or for an account
    changes: dict[str, int] = field(default_factory=dict)  # status changes by kind


class SyncEngine:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        access: MlsAccess,
        unpublisher: Unpublisher,
        clock: Callable[[], datetime] = utcnow,
        on_progress: Callable[[str, int, int], None] = lambda cid, done, total: None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.access = access
        self.unpublisher = unpublisher
        self.clock = clock
        self.on_progress = on_progress
        # Told the id of each run this engine records, once its row exists (the CLI says on
        # Ctrl-C whether a run was recorded, or nothing was synced).
        self.on_run_recorded: Callable[[int], None] = lambda run_id: None
        self.mapping = settings.mls.status_mapping()
        self.hostname = socket.gethostname()
        self.holder = this_process()
        # The database's slot offset (daemon/sync/cycle_slots.py); the daemon reads it at
        # start, before its first clock's cycle.
        self.slot_offset = 0
        # Whether another host's process whose own lease ran out is taken for gone: only in
        # a daemon that keeps its own and has watched it (daemon/sync/process_lease.py).
        self.witness: Callable[[], process_lease.Witness | None] = lambda: None
        # Connections a read of the change log or an apply of pushed events runs on now.
        self._between_cycles: dict[str, anyio.Event] = {}

    def apply_settings(self, settings: Settings) -> None:
        """A reload (SIGHUP): limits, timeouts, mapping and platform settings take effect from
        the next request. What the HTTP clients were made with at start (the MLS engine, the
        pools' size) is warned about by `MlsAccess.apply` and `Unpublisher.apply`; the
        sections that need a restart (database, HTTP address) by the caller."""
        self.settings = settings
        self.mapping = settings.mls.status_mapping()
        self.access.apply(settings.mls)
        self.unpublisher.apply(settings)

    # -- the three entry points ------------------------------------------------------------

    async def sync_all(self, trigger: str = "manual", run_id: int | None = None) -> RunReport:
        """Every active connection; for the clock's cycles, those no process has synced in
        this slot (daemon/sync/cycle_slots.py). `run_id`: a run reserved by `reserve_run`,
        reported under."""
        every = await connections.list_all(self.db, active_only=True)
        self.access.forget_others([t.id for t in every])
        slot = self._slot(trigger)
        bounds = self._slot_bounds(slot)
        targets = [
            t for t in every if bounds is None or not synced_in_slot(t.last_sync_started_at, bounds)
        ]
        return await self._run(trigger, "all", targets, reserved=run_id, slot=slot)

    async def anything_due(self, trigger: str) -> bool:
        """Whether a cycle of `trigger` has work: a connection no process synced in this
        slot and no live process syncs now, or posts the unpublish pass of a process that
        died left due. When it has none, a catch-up starts no run."""
        slot = self._slot(trigger)
        if slot is None:
            return True
        if trigger == "catch_up" and self.clock() < slot + timedelta(seconds=self._settle()):
            return False  # the slot's own cycles, each daemon's after its jitter, come first
        rows = await connections.list_all(self.db, active_only=True)
        now = self.clock()
        async with self.db.reading() as conn:
            leased = await leases.valid_in(conn, iso(now))
            lapsed = await self._lapsed_processes(conn, now)
        busy = {cid for cid, holder in leased if not is_gone(holder, self.hostname, lapsed)}
        bounds = slot_bounds(slot, self.settings.cycle_seconds())
        if any(
            not synced_in_slot(r.last_sync_started_at, bounds) and r.id not in busy for r in rows
        ):
            return True
        return await self._unpublish_left_unfinished()

    async def _unpublish_left_unfinished(self) -> bool:
        """Whether posts are due that no unpublish pass takes down: with no lease held, posts
        of active accounts that no pass of this process has read since they fell due (a pass
        that ran while another daemon applied their sales read its posts before them, and
        that daemon's own pass was refused the lease); or a lease left behind, expired or
        held by a process gone, with posts still due (a process died in its pass). Posts a
        pass read and left due (an account's token that cannot be decrypted) start no
        second catch-up: once is enough, or every minute would make a run. A look itself
        marks nothing: a catch-up that failed before its pass is started again. Posts of
        accounts that are not active wait for a person, not for a catch-up."""
        left = await leases.holder_of(self.db, UNPUBLISH_LEASE)
        now = self.clock()
        if left is not None:
            holder, until = left
            # Not taken from another host's process before it expires, whatever its process
            # lease says: the pass checks its own lease's time before each DELETE
            # (daemon/sync/unpublish_lease.py), and a live one must not meet a second pass.
            if parse_iso(until) >= now and not is_dead(holder, self.hostname):
                return False  # a pass runs now
        due = await posts.due_for_unpublish(self.db, self.settings.sync.unpublish_on, iso(now))
        unread = self.unpublisher.unread(due)
        if left is not None:
            return bool(due)
        if not unread:
            return False
        active = await accounts.for_ids(self.db, sorted({p.account_id for p in unread}))
        return any(
            (account := active.get(p.account_id)) is not None
            and account.state == AccountState.ACTIVE
            for p in unread
        )

    def _settle(self) -> int:
        """How long into a slot the clock's cycles may begin (the scheduler's jitter wait)."""
        return min(self.settings.sync.jitter_seconds, self.settings.cycle_seconds() // 2)

    def _slot(self, trigger: str) -> datetime | None:
        return self._current_slot() if trigger in SHARED_TRIGGERS else None

    def _current_slot(self) -> datetime:
        """The start of the clock's slot now is in (daemon/sync/cycle_slots.py)."""
        return slot_start(self.clock(), self.settings.cycle_seconds(), self.slot_offset)

    def _slot_bounds(self, slot: datetime | None) -> tuple[str, str] | None:
        return None if slot is None else slot_bounds(slot, self.settings.cycle_seconds())

    def _reads_again(self, trigger: str, targets: Sequence[ConnectionRow]) -> bool:
        """Whether the run reads again the listings events named within the overlap (see
        `_read_unconfirmed`): every run but a poll's, and a poll's too when it is its
        connection's first sync in the clock's slot, since the clock's cycle then leaves the
        connection to it (daemon/sync/cycle_slots.py)."""
        if trigger != POLL:
            return True
        bounds = slot_bounds(self._current_slot(), self.settings.cycle_seconds())
        return any(not synced_in_slot(t.last_sync_started_at, bounds) for t in targets)

    async def sync_user(
        self, user_id: str, trigger: str = "manual", run_id: int | None = None
    ) -> RunReport:
        """Every active connection of one user (paused ones and those that need
        re-authentication wait). `run_id`: a run reserved by `reserve_run`, reported under."""
        targets = await connections.active_of_user(self.db, user_id)
        return await self._run(trigger, f"user:{user_id}", targets, reserved=run_id)

    async def reserve_run(self, trigger: str, scope: str = "all") -> int:
        """The row a run that has yet to begin will report under (a full cycle, or a user's
        sync: `user:ID`), so whoever asked for it can follow it (POST /v1/sync answers with
        its id)."""
        return await runs.start(self.db, trigger, scope, self.holder, iso(self.clock()))

    async def abandon_run(self, run_id: int, reason: str) -> None:
        """Ends a reserved run that is still `running` although no cycle runs it (the daemon
        stopped before the cycle began, or the cycle ended before it began its run), with
        `reason` as its error. A run that ended already is left as it is."""
        error = ErrorEntry("run", reason)
        async with self.db.transaction() as conn:
            if await runs.is_running(conn, run_id):
                await runs.end_in(conn, run_id, "interrupted", iso(self.clock()), error)

    async def sync_connection(self, connection_id: str, trigger: str = "manual") -> RunReport:
        row = await connections.get(self.db, connection_id)
        if row is None:
            raise NotFound("no MLS connection has this id (see `mls-sync connections list`)")
        _refuse_unless_active(row)
        return await self._run(trigger, f"connection:{connection_id}", [row])

    async def poll_change_log(self, row: ConnectionRow) -> PollOutcome:
        """Between cycles, an events-mode connection's change log: one request asks whether
        it has anything after the saved sequence, and only then does a sync of the connection
        (a run) read and apply it. A connection another sync holds is `busy` (asked again
        soon); a full pass that is due is left to the cycle; a failed check is logged, and
        the next cycle's sync records the failure in its run."""
        if await self._held_elsewhere(row.id):
            return PollOutcome("busy")
        current = await connections.get(self.db, row.id)  # its cursor as the last run left it
        if current is None or current.state != ConnectionState.ACTIVE:
            return PollOutcome("left_to_cycle")
        row = current
        if row.cursor is None or self._reconcile_due(row):
            return PollOutcome("left_to_cycle")
        client = self.access.client_for(row, lambda: None)
        try:
            found = await client.has_events_after(int(row.cursor))
        except NeedsReauth:
            found = True  # refused credentials: a sync records it and marks needs_reauth
        except MlsError as exc:  # the server down, throttling, unreachable: the cycle records
            log.warning("change_log_poll_failed", connection_id=row.id, error=str(exc))
            return PollOutcome("failed")
        if not found:
            return PollOutcome("quiet")
        return await self._run_between_cycles(row.id, POLL, "synced", self.sync_connection)

    async def apply_pushes(self, row: ConnectionRow, retry_failed: bool = True) -> PollOutcome:
        """The events the MLS pushed to the connection, if any wait: applied in a run
        (`pushed`; `more_pushed` when the run took some and more wait), or `none`.
        `retry_failed` off leaves the events whose listing could not be read before for a
        later apply: those are tried once an interval, not with every push."""
        waiting = await pushed_events.waiting(self.db, row.id, retry_failed)
        if not waiting:
            return PollOutcome("none")
        if await self._held_elsewhere(row.id):
            return PollOutcome("busy")

        async def apply(connection_id: str, trigger: str) -> RunReport:
            return await self.apply_pushed(connection_id, trigger, retry_failed)

        result = await self._run_between_cycles(row.id, "push", "pushed", apply)
        left = await pushed_events.waiting(self.db, row.id, retry_failed)
        return replace(result, more_pushed=0 < left < waiting)

    async def _held_elsewhere(self, connection_id: str) -> bool:
        current = await leases.holder_of(self.db, connection_id)
        return current is not None and parse_iso(current[1]) > self.clock()

    async def _run_between_cycles(
        self,
        connection_id: str,
        trigger: str,
        outcome: str,
        run: Callable[[str, str], Awaitable[RunReport]],
    ) -> PollOutcome:
        """The run, known while it lasts to a cycle that comes to its connection, which waits
        for it rather than skip the connection."""
        self._between_cycles[connection_id] = ended = anyio.Event()
        itself = _BETWEEN_CYCLES_OF.set(connection_id)
        try:
            report = await run(connection_id, trigger)
        except (SyncRefused, NotFound):  # paused, re-authentication or removed meanwhile
            return PollOutcome("left_to_cycle")
        finally:
            _BETWEEN_CYCLES_OF.reset(itself)
            del self._between_cycles[connection_id]
            ended.set()
        return PollOutcome(outcome, report)

    async def apply_pushed(
        self, connection_id: str, trigger: str = "push", retry_failed: bool = True
    ) -> RunReport:
        """A run that applies the events the MLS pushed to the connection (the oldest
        PUSHED_PER_RUN of them; with `retry_failed` off, of those never tried): the listings
        they name are read and applied."""
        row = await connections.get(self.db, connection_id)
        if row is None:
            raise NotFound("no MLS connection has this id (see `mls-sync connections list`)")
        _refuse_unless_active(row)
        # Scope `push:ID`, not `connection:ID`: applying pushed events reads no change log,
        # so it must not count as the connection's last read of its MLS (cycle_health.py).
        pushed = PushedPart(retry_failed)
        return await self._run(trigger, f"push:{connection_id}", [row], pushed=pushed)

    async def sync_listing(
        self, listing_id: str, trigger: str = "manual"
    ) -> tuple[RunReport, ListingRow]:
        """The manual sync of one listing: ask the MLS now, apply, report."""
        listing = await listings.get(self.db, listing_id)
        if listing is None:
            raise NotFound("no listing has this id (see `mls-sync listings list`)")
        if listing.excluded:
            raise SyncRefused(
                f"listing {listing_id!r} is excluded from sync; "
                f"`mls-sync listings include {listing_id}` first"
            )
        row = await connections.get(self.db, listing.connection_id)
        assert row is not None  # foreign key
        _refuse_unless_active(row)
        report = await self._run(trigger, f"listing:{listing_id}", [row], only_listing=listing)
        after = await listings.get(self.db, listing_id)
        assert after is not None
        return report, after

    # -- one run ------------------------------------------------------------------------------

    async def _run(
        self,
        trigger: str,
        scope: str,
        targets: list[ConnectionRow],
        only_listing: ListingRow | None = None,
        reserved: int | None = None,
        pushed: PushedPart | None = None,
        slot: datetime | None = None,
    ) -> RunReport:
        started = iso(self.clock())
        await self._interrupt_orphans(started)
        if reserved is None:
            run_id = await runs.start(self.db, trigger, scope, self.holder, started)
            self.on_run_recorded(run_id)
        else:
            run_id = reserved
            await runs.begin_reserved(self.db, run_id, started)
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            log.info("run_started", trigger=trigger, scope=scope, connections=len(targets))
            held: dict[str, str] = {}
            read_again = self._reads_again(trigger, targets)
            shared = _RunShared(
                run_id,
                writer(self.db, self.mapping, held, self.clock),
                leases.acquirer(self.db),
                listings.tracked_reader(self.db),
                held,
                pushed=pushed,
                due_only=trigger in check_tiers.SCHEDULED_TRIGGERS
                and self.settings.effective_check_intervals().enabled,
                slot=slot,
                read_again=read_again,
            )
            try:
                # Read inside: a database error here ends the run as any other does.
                shared.unconfirmed_in = await self._unconfirmed_in(targets, pushed, read_again)
                shared.failing_alone = await listings.failing_alone(self.db)
                failed = await self._sync_targets(shared, targets, only_listing)
                results = await self._reconcile_posts(run_id, scope)
                run = await runs.finish(self.db, run_id, iso(self.clock()), failed)
            except BaseException as exc:  # Ctrl-C, SIGTERM, a database error...
                await self._cut_short(run_id, shared.taken, exc)
                raise
            due = await posts.due_for_unpublish(
                self.db, self.settings.sync.unpublish_on, iso(self.clock()), _due_scope(scope)
            )
            log.info(
                "run_finished",
                outcome=run.outcome,
                checked=run.listings_checked,
                changes=run.status_changes,
                errors=run.errors,
                posts_unpublished=run.posts_unpublished,
                posts_failed=run.posts_failed,
            )
        return RunReport(
            run,
            await runs.errors_of(self.db, run_id, 50),
            results,
            len(due),
            await listings.changes_by_kind(self.db, run_id),
        )

    async def _interrupt_orphans(self, now: str) -> None:
        """Ends the runs left `running` by processes that died (daemon/sync/process_lease.py
        says how one on another host is known)."""
        running = await runs.running(self.db)
        if not running:
            return
        async with self.db.reading() as conn:
            leased = await leases.valid_in(conn, now)
            lapsed = await self._lapsed_processes(conn, parse_iso(now))
        orphans = process_lease.orphaned_runs(
            running, leased, lapsed, parse_iso(now), self.settings.sync.lease_seconds, self.hostname
        )
        if orphans:
            await runs.interrupt(self.db, orphans, now)

    async def _lapsed_processes(self, conn: Session, now: datetime) -> frozenset[str]:
        witness = self.witness()
        if witness is None:
            return frozenset()
        return await process_lease.lapsed_processes(conn, now, witness)

    async def _sync_targets(
        self, shared: _RunShared, targets: list[ConnectionRow], only_listing: ListingRow | None
    ) -> bool:
        """Syncs each connection under its lease; True when every one of them failed."""
        limiter = anyio.CapacityLimiter(self.settings.sync.max_concurrent_connections)
        stopped: list[str] = []

        async def one(row: ConnectionRow) -> None:
            async with limiter:
                if not await self._sync_one(shared, row, only_listing):
                    stopped.append(row.id)

        async with (
            shared.writes.running(),
            shared.lease_requests.running(),
            shared.tracked_reads.running() if shared.tracked_reads else nullcontext(),
            anyio.create_task_group() as keeper,
        ):
            keeper.start_soon(self._keep_leases, shared)
            async with anyio.create_task_group() as tg:
                for row in targets:
                    tg.start_soon(one, row)
            keeper.cancel_scope.cancel()
        return bool(targets) and len(stopped) == len(targets)

    async def _cut_short(
        self, run_id: int, taken: Sequence[tuple[str, str]], exc: BaseException
    ) -> None:
        """A run cut by a signal, a cancel or an error still ends: its row says `interrupted`
        or `failed` (with the error), and every lease it took is freed. Tried again for a
        while, since a database error that stopped the run may be a passing lock."""
        leaf = _innermost(exc)
        interrupted = isinstance(leaf, anyio.get_cancelled_exc_class() | KeyboardInterrupt)
        outcome = "interrupted" if interrupted else "failed"
        error = None if interrupted else ErrorEntry("run", f"run stopped: {_describe(leaf)}")

        async def end() -> None:
            async with self.db.transaction() as conn:
                await runs.end_in(conn, run_id, outcome, iso(self.clock()), error)
                await leases.release_in(conn, taken)

        if not await until_written(end, f"the end of run {run_id} ({outcome})"):
            return
        if error is None:
            log.info("run_interrupted")
        else:
            log.warning("run_failed", error=error.message)

    async def unpublish_listing(self, listing_id: str, trigger: str = "manual") -> RunReport:
        """Every published post of the listing taken down now, whatever its status."""
        if await listings.get(self.db, listing_id) is None:
            raise NotFound("no listing has this id (see `mls-sync listings list`)")
        run_id = await runs.start(
            self.db, trigger, f"unpublish:{listing_id}", self.holder, iso(self.clock())
        )
        self.on_run_recorded(run_id)
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            try:
                results = await self.unpublisher.unpublish_listing(run_id, listing_id)
                run = await runs.finish(self.db, run_id, iso(self.clock()), failed=False)
            except BaseException as exc:
                await self._cut_short(run_id, [], exc)
                raise
        return RunReport(run, await runs.errors_of(self.db, run_id, 50), results)

    async def _reconcile_posts(self, run_id: int, scope: str) -> list[PostResult]:
        """After the statuses: take down what must come down. A failure here is the run's,
        recorded like any other; the next cycle asks again (level-triggered)."""
        try:
            return await self.unpublisher.reconcile(run_id, _due_scope(scope))
        except Exception as exc:
            log_failure(log, exc, "unpublish_crashed", "unpublish_database_error")
            leaf = _innermost(exc)
            await self._record(
                run_id, ErrorEntry("run", f"unpublishing stopped: {_describe(leaf)}")
            )
            return []

    async def _sync_one(
        self, shared: _RunShared, row: ConnectionRow, only_listing: ListingRow | None
    ) -> bool:
        """Syncs one connection under its lease; returns False when the connection as a whole
        failed. Every failure is recorded in the run, none escapes to the other connections."""
        holder = f"{self.holder}:{uuid.uuid4().hex[:8]}"
        lease_ttl = timedelta(seconds=self.settings.sync.lease_seconds)
        if not await self._take_lease(shared, row.id, holder, lease_ttl) and not (
            await self._after_between_cycles(shared, row.id, holder, lease_ttl)
        ):
            # A clock's cycle: another daemon syncs it in this slot, or synced it already (its
            # journal has the connection_synced line). At debug: with many connections and
            # several daemons, every slot would log one line per connection per daemon.
            if shared.slot is not None:
                log.debug("connection_synced_elsewhere", connection_id=row.id)
                return True
            current = await leases.holder_of(self.db, row.id)
            who = f"{current[0]} until {current[1]}" if current else "another process"
            await self._record(
                shared.run_id,
                ErrorEntry(
                    "connection",
                    f"skipped: already being synced by {who}",
                    row.id,
                    severity="warning",
                ),
            )
            return True
        done = False  # ConnectionDone committed: it released the lease
        shared.held[row.id] = holder
        with structlog.contextvars.bound_contextvars(connection_id=row.id):
            try:
                ok = await self._sync_under_lease(shared, row, only_listing, holder)
                done = True
                return ok
            finally:
                shared.held.pop(row.id, None)
                shared.stop_work.pop(row.id, None)
                if not done:  # a crash or a cancel on the way: release it anyway
                    with anyio.CancelScope(shield=True), suppress(StoreError):
                        await leases.release(self.db, row.id, holder)  # or at the run's end

    async def _take_lease(
        self, shared: _RunShared, connection_id: str, holder: str, ttl: timedelta
    ) -> bool:
        now = self.clock()
        # In a clock's cycle, not if another daemon synced it in the slot since this cycle's
        # list was read.
        wanted = leases.LeaseRequest(
            connection_id, holder, iso(now), iso(now + ttl), self._slot_bounds(shared.slot)
        )
        taken = lease_keeping.take(
            self.db, wanted, shared.lease_requests.submit, self.hostname, self.witness()
        )
        if await taken:
            shared.taken.append((connection_id, holder))
            return True
        return False

    async def _after_between_cycles(
        self, shared: _RunShared, connection_id: str, holder: str, ttl: timedelta
    ) -> bool:
        """Takes the lease once a read of the change log or an apply of pushed events of
        this process (short runs) has let it go: a run that skipped the connection for one
        would not have read what it was asked to. False when no such run holds it (another
        sync does: skipped, as always), when this run is that run (a cycle took the lease
        between its look and its take), or when the lease could not be taken after it."""
        ended = self._between_cycles.get(connection_id)
        if ended is None or _BETWEEN_CYCLES_OF.get() == connection_id:  # none, or this one
            return False
        with anyio.move_on_after(ttl.total_seconds()):
            await ended.wait()
        return await self._take_lease(shared, connection_id, holder, ttl)

    async def _keep_leases(self, shared: _RunShared) -> None:
        """Renews every lease the run holds: one task and one transaction for all of them,
        not a task per connection. A lost lease stops its connection's sync at once (the rules
        are lease_keeping's)."""
        ttl = timedelta(seconds=self.settings.sync.lease_seconds)

        async def renew(asked: Mapping[str, str]) -> set[str]:
            now = self.clock()
            return await leases.renew_many(self.db, asked, iso(now), iso(now + ttl))

        def lost(connection_id: str) -> None:
            del shared.held[connection_id]  # its writes are refused from now on
            if (work := shared.stop_work.get(connection_id)) is not None:
                work.cancel()

        await lease_keeping.keep(ttl.total_seconds(), lambda: shared.held, renew, lost)

    async def _sync_under_lease(
        self, shared: _RunShared, row: ConnectionRow, only_listing: ListingRow | None, holder: str
    ) -> bool:
        run_id = shared.run_id
        requests = 0
        started = iso(self.clock())

        def count_request() -> None:
            nonlocal requests
            requests += 1

        try:
            client = self.access.client_for(
                row, count_request, shared.failing_alone.get(row.id, ())
            )
        except Exception as exc:  # a secret that no longer decrypts, say
            unprepared = f"cannot prepare: {exc}"
            await self._record(run_id, ErrorEntry("connection", unprepared, row.id))
            done = ConnectionDone(run_id, row.id, iso(self.clock()), requests, unprepared, holder)
            await _end_connection(shared, done)
            return False
        work = ConnectionSync(
            db=self.db,
            writer=shared.writes,
            row=row,
            client=client,
            run_id=run_id,
            max_url_length=self.settings.mls.max_url_length,
            clock=self.clock,
            lease_holder=holder,
            on_progress=self.on_progress,
        )
        error = await self._work(shared, work, row, only_listing)
        if work.stopped is not None:
            error = str(work.stopped)
            await self._stopped(run_id, row, work.stopped)
        # The run's counts, the connection's last error (cleared by a clean cycle) and its
        # lease, in one transaction.
        last_error = error or work.error_summary()
        reauth = ConnectionState.NEEDS_REAUTH if isinstance(work.stopped, NeedsReauth) else None
        done = ConnectionDone(
            run_id,
            row.id,
            iso(self.clock()),
            requests,
            last_error,
            holder,
            reauth,
            # A sync of the connection: not an apply of pushed events, nor of one listing.
            marks_synced=shared.pushed is None and only_listing is None,
            started=started,
        )
        committed = await _end_connection(shared, done)
        # One line per connection, once its sync is committed: which process synced which
        # connection, and when (journald's view when several daemons share a database). Not
        # for an apply of pushed events (no sync of the connection), nor once the lease was
        # lost (what the sync would have recorded was refused).
        if shared.pushed is None and committed:
            log.info(
                "connection_synced",
                checked=work.counts.checked,
                changes=work.counts.changes,
                errors=work.counts.errors,
                requests=requests,
            )
        return error is None or work.counts.checked > 0

    async def _work(
        self,
        shared: _RunShared,
        work: ConnectionSync,
        row: ConnectionRow,
        only_listing: ListingRow | None,
    ) -> str | None:
        """The connection's sync, stopped at once if its lease is lost; returns the error
        that ended it (recorded in the run), if any."""
        run_id = shared.run_id
        error: str | None = None
        with anyio.CancelScope() as scope:
            shared.stop_work[row.id] = scope
            try:
                if shared.pushed is not None:
                    await work.pushed_events(PUSHED_PER_RUN, shared.pushed.retry_failed)
                else:
                    await self._dispatch(work, row, only_listing, shared)
            except MlsError as exc:
                error = str(exc)
                await self._record(run_id, ErrorEntry("connection", error, row.id))
            except Exception as exc:
                leaf = _innermost(exc)
                if isinstance(leaf, LeaseLost):  # recorded with the write it refused
                    log.error("lease_lost", connection_id=row.id)
                    return str(leaf)
                if isinstance(leaf, StoreError):  # a lock held too long, a bad value: no bug
                    log.warning("connection_sync_database_error", error=str(leaf))
                else:  # a bug must not take the other connections down
                    log.exception("connection_sync_crashed")
                error = _describe(leaf)
                await self._record(run_id, ErrorEntry("connection", error, row.id))
        if scope.cancelled_caught:  # by _keep_leases
            error = lease_lost(row.id)
            await self._record(run_id, ErrorEntry("connection", error, row.id))
        return error

    async def _dispatch(
        self,
        work: ConnectionSync,
        row: ConnectionRow,
        only_listing: ListingRow | None,
        shared: _RunShared,
    ) -> None:
        if only_listing is not None:
            status = LocalStatus(only_listing.status) if only_listing.status else None
            await work.by_key([TrackedListing(only_listing.id, only_listing.listing_key, status)])
            return
        reading = row.cursor is not None and not self._reconcile_due(row)
        if row.mode == QueryMode.INCREMENTAL and reading:
            await work.incremental()
            await self._read_unconfirmed(work, row, shared)
            return
        if row.mode == QueryMode.EVENTS and reading:
            await work.entity_events()
            await self._read_unconfirmed(work, row, shared)
            return
        started = self.clock()
        # The change log's end before the full pass: what changes from then on, the next
        # sync reads from the log.
        mark: int | None = None
        if row.mode == QueryMode.EVENTS:
            try:
                mark = await work.client.last_sequence()
            except ConnectionStopped as exc:  # refused credentials: needs_reauth, as always
                work.stopped = exc
                return
        if shared.tracked_reads is None:
            tracked = await listings.tracked(self.db, row.id)
        else:
            tracked = await shared.tracked_reads.submit(row.id)
        if row.mode == QueryMode.BY_KEY:
            await self._by_key(work, row, tracked, shared.due_only)
            return
        await work.by_key(tracked)
        if work.stopped is not None or work.failed_batches:
            # Some listings were not asked: the pass is not done, and the next cycle runs it
            # again rather than trusting a cursor that skipped them.
            log.warning("full_reconcile_incomplete", failed_batches=work.failed_batches)
            return
        if mark is not None:
            await work.full_pass_done(str(mark), started)
            return
        # A full reconcile: afterwards, changes are read from when it started. A cursor that
        # a future-dated record once pushed ahead is pulled back here.
        cursor = started
        if row.cursor and parse_iso(row.cursor) <= started + CLOCK_SKEW:
            cursor = max(parse_iso(row.cursor), started)
        await work.full_pass_done(iso(cursor), started)

    async def _unconfirmed_in(
        self, targets: Sequence[ConnectionRow], pushed: PushedPart | None, read_again: bool
    ) -> frozenset[str]:
        if pushed is not None or all(t.mode == QueryMode.BY_KEY for t in targets):
            return frozenset()  # nothing of this run reads changes
        return frozenset(await listings.connections_with_unconfirmed(self.db, read_again))

    async def _read_unconfirmed(
        self, work: ConnectionSync, row: ConnectionRow, shared: _RunShared
    ) -> None:
        """After a read of changes, the listings no read has confirmed, by key: one tracked
        (moved to another key, included again) since the full pass, or whose last check
        failed. Their records may not have changed for years, so no read of changes returns
        them, and without this they would wait for the next full pass (a day, by default).
        Once a slot (`_reads_again`), also those events named within the connection's overlap
        (docs/mls-reso.md "The change log"): a poll, every minute, would read a busy log's
        whole overlap each time. Those the read of changes already asked about are not asked
        again."""
        if work.stopped is not None or row.id not in shared.unconfirmed_in:
            return
        unconfirmed = await listings.unconfirmed(self.db, row.id, shared.read_again)
        if left := [t for t in unconfirmed if t.id not in work.asked]:
            await work.by_key(left)

    async def _by_key(
        self,
        work: ConnectionSync,
        row: ConnectionRow,
        tracked: list[TrackedListing],
        due_only: bool,
    ) -> None:
        """Every tracked listing, or in a scheduled cycle, those whose check tier is due
        (docs/mls-reso.md "Check tiers")."""
        if not due_only:
            await work.by_key(tracked)
            return
        choice = check_tiers.choose(
            tracked,
            self.clock(),
            self.settings.effective_check_intervals(),
            timedelta(seconds=self.settings.cycle_seconds()),
        )
        log.info("check_tiers_due", connection_id=row.id, tracked=len(tracked), due=len(choice.due))
        await work.by_key(choice.first_asked(), fill_from=choice.upcoming)

    def _reconcile_due(self, row: ConnectionRow) -> bool:
        if row.last_full_reconcile_at is None:
            return True
        age = self.clock() - parse_iso(row.last_full_reconcile_at)
        return age >= timedelta(seconds=row.full_reconcile_seconds)

    async def _stopped(self, run_id: int, row: ConnectionRow, exc: MlsError) -> None:
        if isinstance(exc, NeedsReauth):
            # No further calls until someone updates the credentials (which re-activates it);
            # the state is written with the connection's end of the run, under its lease.
            log.error("connection_needs_reauth", error=str(exc))
        elif isinstance(exc, CircuitOpen):
            log.warning("circuit_open", error=str(exc))
        await self._record(run_id, ErrorEntry("connection", str(exc), row.id))

    async def _record(self, run_id: int, entry: ErrorEntry) -> None:
        counts = Counts(errors=1) if entry.severity == "error" else Counts(warnings=1)
        await runs.record_now(self.db, run_id, counts, [entry], iso(self.clock()))


@dataclass(frozen=True)
class PollOutcome:
    """What a poll of a change log came to: `quiet` (nothing new: one request), `synced`
    (`report` is the run that applied what was new), `busy` (another sync holds the
    connection), `left_to_cycle` (a full pass is due, or no longer active) or `failed`; or
    what an apply of pushed events came to: `none` (none wait), `pushed` (`report` applied
    them; `more_pushed`: it took some and more wait), `busy` or `left_to_cycle`."""

    outcome: str
    report: RunReport | None = None
    more_pushed: bool = False


@dataclass(frozen=True)
class PushedPart:
    """A run that applies pushed events: whether it tries again those whose listing could
    not be read before."""

    retry_failed: bool


@dataclass
class _RunShared:
    """What the connections of one run share: the writers that commit their writes in
    groups (one transaction for many connections), and the leases held, renewed together."""

    run_id: int
    writes: SyncWriter
    lease_requests: GroupWriter[leases.LeaseRequest, bool]
    # Connection id -> its tracked listings, read together where that costs less, else None.
    tracked_reads: GroupWriter[str, list[TrackedListing]] | None
    held: dict[str, str] = field(default_factory=dict)  # connection id -> lease holder
    stop_work: dict[str, anyio.CancelScope] = field(default_factory=dict)  # on a lost lease
    taken: list[tuple[str, str]] = field(default_factory=list)  # every lease, freed at the end
    pushed: PushedPart | None = None  # the run applies pushed events, not a sync
    due_only: bool = False  # by_key connections ask only for their due listings
    slot: datetime | None = None  # a clock's cycle: syncs what nobody has in this slot
    # Whether the listings events named within the overlap are read again: not in a poll's
    # run (see the engine's _read_unconfirmed).
    read_again: bool = True
    # The connections with listings no read has confirmed (or read again), as the run
    # started: those a read of changes must also read by key (the engine's _read_unconfirmed).
    unconfirmed_in: frozenset[str] = frozenset()
    # Each connection's keys a query of their own failed, as the store knew them when the
    # run started: its sync asks them alone, first (`MlsClient.fails_alone`).
    failing_alone: Mapping[str, frozenset[str]] = field(default_factory=dict)


async def _end_connection(shared: _RunShared, done: ConnectionDone) -> bool:
    """The end of a connection's sync written; False when its lease was no longer held (the
    connection's state is its new holder's: only the run's counts were written)."""
    try:
        await shared.writes.submit(done)
    except LeaseLost:
        log.error("lease_lost", connection_id=done.connection_id)
        return False
    return True


def _due_scope(scope: str) -> DueScope:
    kind, _, ident = scope.partition(":")
    if kind in ("connection", "push"):
        return DueScope(connection_id=ident)
    if kind == "listing":
        return DueScope(listing_id=ident)
    if kind == "user":
        return DueScope(user_id=ident)
    return DueScope()


def _describe(error: BaseException) -> str:
    if isinstance(error, StoreError):
        return f"database error: {error}"
    return f"internal error: {type(error).__name__}: {error}"


def _innermost(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups, for a readable message."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _refuse_unless_active(row: ConnectionRow) -> None:
    if row.state == ConnectionState.PAUSED:
        raise SyncRefused(
            f"connection {row.id!r} is paused; `mls-sync connections resume {row.id}`"
        )
    if row.state == ConnectionState.NEEDS_REAUTH:
        raise SyncRefused(
            f"connection {row.id!r} needs re-authentication ({row.last_error}); update its "
            "credentials with `mls-sync connections add` (same id), which re-activates it"
        )
