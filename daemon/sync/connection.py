"""Syncing one connection inside one run: fetch, decide, write, batch by batch.

Failures stay as small as they can (invariant 4): a bad record fails its listing, a failed
request its batch; only a 401 pair or a tripped circuit breaker stops the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio
import structlog

from daemon.enums import KeyFilter, QueryMode
from daemon.mls.client import BatchAnswer, MlsClient
from daemon.mls.entity_events import EventPage
from daemon.mls.errors import ConnectionStopped, MlsError, OutOfOrder, QueryFailed
from daemon.mls.payload import Page
from daemon.mls.query import key_batches, keys_per_request
from daemon.models import MlsRecord, Observation, Removed
from daemon.store import leases, listings, pushed_events, runs
from daemon.store.database import Database
from daemon.store.records import ConnectionRow, TrackedListing
from daemon.store.runs import Counts, ErrorEntry
from daemon.sync.check_tiers import filled_batches
from daemon.sync.sync_writer import SyncWriter
from daemon.sync.sync_writes import BatchWrite, Failure
from daemon.timestamps import iso, parse_iso

log = structlog.get_logger("mls_sync.sync")

# Batches of one connection in flight at once; the per-credential limiter is what really
# paces them, this only keeps enough requests ready that the limiter is the only wait.
PARALLEL_BATCHES = 4

# How far past our own clock an MLS timestamp may lie and still move the cursor: servers'
# clocks run a little ahead of ours, but a record dated next year must not carry the cursor
# (and with it change detection) into the future (invariant 5).
CLOCK_SKEW = timedelta(seconds=60)

# Applies of a pushed event whose listing's read fails before the event is given up (with a
# recorded error): an MLS that keeps failing one record must not keep a queue full for ever.
PUSH_ATTEMPTS = 5


@dataclass
class ConnectionSync:
    db: Database
    writer: SyncWriter
    row: ConnectionRow
    client: MlsClient
    run_id: int
    max_url_length: int
    clock: Callable[[], datetime]
    lease_holder: str
    on_progress: Callable[[str, int, int], None] = lambda cid, done, total: None
    counts: Counts = field(default_factory=Counts)
    stopped: ConnectionStopped | None = None
    failed_batches: int = 0  # requests that failed after their retries: keys not checked
    # The listings this sync has asked about, read or not: a listing it could not confirm is
    # not asked again in the same sync (its error is recorded once).
    asked: set[str] = field(default_factory=set)
    first_error: str | None = None
    _done: int = 0
    _total: int = 0

    # -- by key ------------------------------------------------------------------------------

    async def by_key(
        self, tracked: Sequence[TrackedListing], fill_from: Iterable[TrackedListing] = ()
    ) -> None:
        """Asks for every key of `tracked`, in batches, and applies each answer as it comes.
        Room left in the requests is filled from `fill_from`, in its order: keys asked
        early, for no extra request (daemon/sync/check_tiers.py)."""
        id_by_key = {t.listing_key: t.id for t in tracked}
        per_request = keys_per_request(KeyFilter(self.row.key_filter), self.row.batch_size)
        batches, extra = filled_batches(list(id_by_key), fill_from, per_request, self._batches)
        id_by_key.update((t.listing_key, t.id) for t in extra)
        self._total = len(id_by_key)
        # The workers share one iterator of the batches: each takes the next one when it is
        # free. No stream is needed on one event loop, where taking the next batch is one
        # step that no other task interrupts. A cancelled worker stops at its next request.
        next_batches = iter(batches)
        async with anyio.create_task_group() as tg:
            # One worker is this task: a task made costs more than most of what a connection
            # of two batches does on the loop.
            for _ in range(min(PARALLEL_BATCHES, len(batches)) - 1):
                tg.start_soon(self._batch_worker, next_batches, id_by_key, tg.cancel_scope)
            await self._batch_worker(next_batches, id_by_key, tg.cancel_scope)

    async def _batch_worker(
        self, batches: Iterator[list[str]], id_by_key: dict[str, str], group: anyio.CancelScope
    ) -> None:
        for keys in batches:
            try:
                answer = await self.client.fetch_batch(keys)
            except ConnectionStopped as exc:
                self.stopped = exc
                group.cancel()
                return
            except MlsError as exc:
                await self._batch_failed(keys, id_by_key, str(exc))
                continue
            await self._apply_answer(answer, id_by_key)

    async def _apply_answer(self, answer: BatchAnswer, id_by_key: dict[str, str]) -> None:
        await self._apply(*_observations(answer, id_by_key))
        self._done += len(answer.records) + len(answer.removed) + len(answer.errors)
        self.on_progress(self.row.id, self._done, self._total)

    async def _batch_failed(
        self,
        keys: Sequence[str],
        id_by_key: dict[str, str],
        message: str,
        pushed_tried: Sequence[int] = (),
    ) -> None:
        """The request failed after its retries: one batch error (not one per listing), and
        each listing keeps its status and shows the reason; the pushed events that asked for
        these listings count one more failed apply (see `_tried`)."""
        first, last = keys[0], keys[-1]
        entry = ErrorEntry(
            "batch",
            f"{len(keys)} listing(s) {first}..{last} not checked: {message}",
            self.row.id,
        )
        counts = Counts(errors=1)
        self._note_asked(id_by_key[k] for k in keys)
        async with self.db.transaction() as conn:
            # In the write's turn in this process. SQLite's lock comes with the first
            # statement, after at most the busy timeout if another process holds it: a
            # lease taken over meanwhile has another holder, which the fence sees.
            now = iso(self.clock())
            # Fenced: a process that lost its lease leaves the listings to their new syncer.
            if await leases.still_held(conn, self.row.id, self.lease_holder, now):
                asked = {id_by_key[k]: k for k in keys}
                await listings.mark_not_checked(conn, self.row.id, asked, message)
                await pushed_events.tried(conn, pushed_tried)
            await runs.record(conn, self.run_id, counts, [entry], now)
        self.counts.add(counts)
        self.failed_batches += 1
        self._note_error(entry.message)
        self._done += len(keys)
        log.warning("batch_failed", connection_id=self.row.id, keys=len(keys), error=message)

    async def _apply(
        self,
        observations: Sequence[tuple[str, Observation]],
        failures: Sequence[Failure],
        cursor: str | None = None,
        reconciled_at: str | None = None,
        pushed_done: Sequence[int] = (),
        named_by_events: Collection[str] = (),
    ) -> None:
        """Statuses, audit rows and run counts (+ the cursor in incremental and events modes,
        so it never runs ahead of the data; + the pushed events read, which leave their
        queue) commit together, with other batches' (group commit), fenced by the lease.
        `named_by_events`: the listings events named, which the connection's cycles read
        again for its overlap: a server's reads may lag its change log (a cache, a replica),
        and no later event names a record that caught up with its change (docs/mls-reso.md
        "The change log")."""
        self._note_asked(listing_id for listing_id, _ in observations)
        self._note_asked(f.listing_id for f in failures)
        now = self.clock()
        at = iso(now)
        again = None
        if named_by_events and self.row.overlap_seconds > 0:
            until = iso(now + timedelta(seconds=self.row.overlap_seconds))
            again = dict.fromkeys(named_by_events, until)
        write = BatchWrite(
            self.run_id,
            self.row.id,
            observations,
            failures,
            at,
            cursor,
            reconciled_at,
            pushed_done,
            again,
        )
        applied = await self.writer.submit(write)
        assert applied is not None  # a BatchWrite's result
        self.counts.add(applied.counts)
        for problem in applied.plan.problems:
            if not problem.warning:
                self._note_error(f"listing {problem.listing_id}: {problem.message}")
        for change in applied.plan.changes:
            log.info(
                "status_changed",
                connection_id=self.row.id,
                listing_id=change.listing_id,
                from_status=change.from_status,
                to_status=change.to_status,
                audit_event=change.event,
                standard_status=change.standard_status,
            )

    async def full_pass_done(self, cursor: str, started: datetime) -> None:
        """The full pass of incremental or events mode got an answer for every batch: changes
        are read from `cursor` (a timestamp, a sequence) on, and the next full pass is due a
        period after `started`. Fenced by the lease like every other write of the sync."""
        await self._apply([], [], cursor=cursor, reconciled_at=iso(started))

    def _note_asked(self, listing_ids: Iterable[str]) -> None:
        if self.row.mode != QueryMode.BY_KEY:  # only a read of changes reads by key after
            self.asked.update(listing_ids)

    def _note_error(self, message: str) -> None:
        if self.first_error is None:
            self.first_error = message

    def error_summary(self) -> str | None:
        """What the connection's `last_error` says after this cycle: None when it was clean."""
        if self.counts.errors == 0:
            return None
        first = f"; first: {self.first_error}" if self.first_error else ""
        return f"{self.counts.errors} error(s) in run {self.run_id}{first}"

    # -- events (docs/mls-reso.md "The change log") -----------------------------------------

    async def entity_events(self) -> None:
        """The change log's events after the saved sequence, page by page. An event says only
        that a record changed: the tracked listings a page names are read by key (the read
        is the truth; a key the server no longer returns is removed), and applied with the
        page's last sequence as the cursor, in one commit (invariant 5).

        A request that fails stops the reading there: the sequence stays before the page,
        and the next sync reads it again. A listing whose record came back unreadable, or
        that the server fails on alone, does not hold the sequence: its error, in the same
        commit, makes it wait for a read of its own, which each sync makes until it reads
        (`needs_read`; the engine's `_read_unconfirmed`). Holding the sequence instead made
        each sync read every event since, again, a cost that grew with the log."""
        assert self.row.cursor is not None
        try:
            async for page in self.client.entity_events(int(self.row.cursor)):
                if not await self._apply_event_page(page):
                    return
        except ConnectionStopped as exc:
            self.stopped = exc
        except MlsError as exc:
            await self._record(ErrorEntry("batch", f"change log read stopped: {exc}", self.row.id))

    async def _apply_event_page(self, page: EventPage) -> bool:
        """Whether every request went through."""
        named = page.keys_of(self.row.resource)
        if unreadable := page.unreadable(self.row.resource):
            # An event that names no readable key could be any listing's: every tracked
            # listing is read, so that nothing it stood for is missed.
            await self._record(
                *(
                    ErrorEntry(
                        "batch",
                        f"EntityEvent {sequence} cannot be read ({why}): every tracked "
                        "listing was read in its place",
                        self.row.id,
                        severity="warning",
                    )
                    for sequence, why in unreadable
                )
            )
            tracked = await listings.tracked(self.db, self.row.id)
            id_by_key = {t.listing_key: t.id for t in tracked}
        else:
            id_by_key = await listings.ids_for_keys(self.db, self.row.id, named)
        observations: list[tuple[str, Observation]] = []
        failures: list[Failure] = []
        for keys in self._batches(list(id_by_key)):
            try:
                answer = await self.client.fetch_batch(keys)
            except ConnectionStopped:
                raise
            except QueryFailed as exc:
                if len(keys) > 1 or not (observations or await self._answers_another(keys)):
                    return await self._event_batch_failed(keys, page, exc)
                # A batch of one key (a page's last, or the one tracked listing a page
                # names), which the server fails while it answers other queries: the key
                # fails alone, as a half of a split batch does, and waits for a read of its
                # own (its error) instead of holding the log. A full page stays the same at
                # every sync, and so do its batches: it held the log until the day's full
                # pass.
                answer = self.client.failed_alone(keys[0], exc)
            except MlsError as exc:
                return await self._event_batch_failed(keys, page, exc)
            found, failed = _observations(answer, id_by_key)
            observations += found
            failures += failed
        cursor = page.last_sequence
        await self._apply(
            observations,
            failures,
            cursor=None if cursor is None else str(cursor),
            # Those the readable events named: when an unreadable one had every tracked
            # listing read, all of them read again would be a full pass each cycle.
            named_by_events=[id_by_key[k] for k in named if k in id_by_key],
        )
        return True

    async def _answers_another(self, keys: Sequence[str]) -> bool:
        """Whether the server answers a query of one other tracked key of the connection,
        not one known to fail alone: one request, the proof, when no other query of a page
        was answered with a record, that the server fails `keys` and not every query."""
        failing = self.client.fails_alone
        others = (
            t.listing_key
            for t in await listings.tracked(self.db, self.row.id)
            if t.listing_key not in keys and t.listing_key not in failing
        )
        other = next(others, None)
        if other is None:
            return False
        try:
            await self.client.fetch_batch([other])
        except ConnectionStopped:
            raise
        except MlsError:
            return False
        return True

    async def _event_batch_failed(
        self, keys: Sequence[str], page: EventPage, exc: MlsError
    ) -> bool:
        """A batch of a page of the log that was not read: the page is read again at the
        next sync (its sequence stays before it). False, for `_apply_event_page`."""
        await self._record(
            ErrorEntry(
                "batch",
                f"{len(keys)} listing(s) named by the change log up to sequence "
                f"{page.last_sequence} not read: {exc}; read again at the next sync",
                self.row.id,
            )
        )
        self.failed_batches += 1
        return False

    # -- pushed events (docs/mls-reso.md "Push") ---------------------------------------------

    async def pushed_events(self, limit: int, retry_failed: bool = True) -> None:
        """The oldest `limit` events the MLS pushed. The listings they name are read by key
        (the read is the truth, as for polled events: several events of one listing come to
        one read), and each event leaves the queue with the write that applies its listing's
        read. A listing whose read failed, or came back unreadable, keeps its events queued
        for a later apply (with `retry_failed`: the daemon asks for one with each read of the
        log), PUSH_ATTEMPTS times at most: then they are given up with a
        recorded error (the change log's poll and the full pass read that listing anyway).
        Events of listings not tracked leave the queue at once."""
        queued = await pushed_events.take(self.db, self.row.id, limit, retry_failed)
        given_up = [q for q in queued if q.attempts >= PUSH_ATTEMPTS]
        queue_ids: dict[str, list[int]] = {}
        for q in queued:
            if q.attempts < PUSH_ATTEMPTS:
                queue_ids.setdefault(q.record_key, []).append(q.id)
        id_by_key = await listings.ids_for_keys(self.db, self.row.id, list(queue_ids))
        done = [i for k, ids in queue_ids.items() if k not in id_by_key for i in ids]
        if given_up:
            of = len({q.record_key for q in given_up})
            await self._record(
                ErrorEntry(
                    "batch",
                    f"{len(given_up)} pushed event(s) of {of} listing(s) given up after "
                    f"{PUSH_ATTEMPTS} applies that could not read them; the change log's "
                    "poll and the full pass read those listings instead",
                    self.row.id,
                )
            )
        if done or given_up:
            await self._apply([], [], pushed_done=done + [q.id for q in given_up])
        self._total = len(id_by_key)
        for keys in self._batches(list(id_by_key)):
            try:
                answer = await self.client.fetch_batch(keys)
            except ConnectionStopped as exc:
                self.stopped = exc
                return
            except MlsError as exc:
                tried = [i for k in keys for i in queue_ids[k]]
                await self._batch_failed(keys, id_by_key, str(exc), tried)
                continue
            read = [i for k in keys if k not in answer.errors for i in queue_ids[k]]
            await self._apply(
                *_observations(answer, id_by_key),
                pushed_done=read,
                named_by_events=[id_by_key[k] for k in keys],
            )
            await self._tried([i for k in answer.errors for i in queue_ids[k]])
            self._done += len(keys)
            self.on_progress(self.row.id, self._done, self._total)

    async def _tried(self, event_ids: list[int]) -> None:
        """Pushed events whose listings' reads failed: one more failed apply each, counted
        only under this sync's lease, as every write is fenced. A sync that lost it (paused
        past it, the connection taken over) leaves the count to the new holder, whose own
        reads give the events their PUSH_ATTEMPTS."""
        if not event_ids:
            return
        async with self.db.transaction() as conn:
            if await leases.still_held(conn, self.row.id, self.lease_holder, iso(self.clock())):
                await pushed_events.tried(conn, event_ids)

    def _batches(self, keys: list[str]) -> list[list[str]]:
        """`keys` in batches of the connection's size, each short enough for its URL; first,
        each key a query of its own failed in an earlier sync, alone (`MlsClient.fails_alone`)."""
        if not keys:
            return []
        failing = self.client.fails_alone
        alone = [[k] for k in keys if k in failing] if failing else []
        rest = [k for k in keys if k not in failing] if alone else keys
        return alone + list(
            key_batches(
                rest,
                KeyFilter(self.row.key_filter),
                self.row.batch_size,
                self.client.url_length,
                self.max_url_length,
            )
        )

    # -- incremental -------------------------------------------------------------------------

    async def incremental(self) -> None:
        """Records changed since the cursor (minus the overlap), oldest first; only tracked
        listings are applied (looked up page by page: a page holds a few of them, the
        connection may track thousands). The cursor moves with each page's commit
        (invariant 5)."""
        assert self.row.cursor is not None
        cursor = parse_iso(self.row.cursor)
        since = cursor - timedelta(seconds=self.row.overlap_seconds)
        limits = _CursorLimits.at(self.clock(), timedelta(seconds=self.row.overlap_seconds))
        latest_seen: dict[str, datetime | None] = {}
        try:
            async for page in self.client.changes(since):
                keys = [r.listing_key for r in page.records] + list(page.hidden)
                keys += [e.listing_key for e in page.errors if e.listing_key is not None]
                id_by_key = await listings.ids_for_keys(self.db, self.row.id, keys)
                cursor = await self._apply_page(page, id_by_key, latest_seen, cursor, limits)
        except ConnectionStopped as exc:
            self.stopped = exc
        except MlsError as exc:
            # The cursor stays at the last committed page: next cycle resumes from there. Not
            # after pages out of order: what they held says nothing of what came before it.
            if isinstance(exc, OutOfOrder):
                await self._apply([], [], cursor=self.row.cursor)
            await self._record(
                ErrorEntry("batch", f"incremental query stopped: {exc}", self.row.id)
            )

    async def _record(self, *entries: ErrorEntry) -> None:
        counts = Counts(
            errors=sum(e.severity == "error" for e in entries),
            warnings=sum(e.severity == "warning" for e in entries),
        )
        await runs.record_now(self.db, self.run_id, counts, list(entries), iso(self.clock()))
        self.counts.add(counts)
        for entry in entries:
            if entry.severity == "error":
                self._note_error(entry.message)

    async def _apply_page(
        self,
        page: Page,
        id_by_key: dict[str, str],
        latest_seen: dict[str, datetime | None],
        cursor: datetime,
        limits: _CursorLimits,
    ) -> datetime:
        read_in_place = False
        if unreadable := [e.message for e in page.errors if e.listing_key is None]:
            await self._read_in_place_of(f"a changed record cannot be read ({unreadable[0]})")
            read_in_place = True
        observations: list[tuple[str, Observation]] = []
        ahead: list[ErrorEntry] = []
        for rec in page.records:
            modified = rec.modification_timestamp
            if modified is not None:
                cursor = max(cursor, min(modified, limits.cursor))
                if modified > limits.warning:
                    ahead.append(_future_dated(rec.listing_key, modified, id_by_key, self.row.id))
            if rec.listing_key in id_by_key and _is_new(rec, latest_seen):
                observations.append((id_by_key[rec.listing_key], rec))
        for key in page.hidden:
            if key in id_by_key:
                observations.append((id_by_key[key], Removed(key, "MlgCanView is false")))
        failures = [
            Failure(id_by_key[e.listing_key], e.listing_key, e.message)
            for e in page.errors
            if e.listing_key is not None and e.listing_key in id_by_key
        ]
        if ahead:
            await self._record(*ahead)
        if read_in_place:  # read by key just now: newer than the page, which moves the cursor
            observations, failures = [], []
        await self._apply(observations, failures, cursor=iso(cursor))
        return cursor

    async def _read_in_place_of(self, why: str) -> None:
        """A changed record without a readable key could be any tracked listing's change:
        every tracked listing is read by key in its place (as in events mode), before the
        cursor moves past it; if a batch of them could not be read, it does not. A listing
        that failed alone has its error, and waits for a read of its own (`needs_read`)."""
        await self._record(
            ErrorEntry(
                "batch",
                f"{why}: every tracked listing was read in its place",
                self.row.id,
                severity="warning",
            )
        )
        failed = self.failed_batches
        await self.by_key(await listings.tracked(self.db, self.row.id))
        if self.stopped is not None:
            raise self.stopped
        if self.failed_batches > failed:
            raise MlsError(
                "not every tracked listing could be read in place of a changed record that "
                "cannot be read; the change cursor stays before it"
            )


@dataclass(frozen=True)
class _CursorLimits:
    """How far an incremental read may move its cursor (invariant 5): to our clock plus the
    skew allowed for the server's clock, but never further than the overlap reaches back,
    or the next read would start after changes made in between; and from when a record's
    timestamp is worth a warning."""

    cursor: datetime
    warning: datetime

    @classmethod
    def at(cls, now: datetime, overlap: timedelta) -> _CursorLimits:
        return cls(now + min(CLOCK_SKEW, overlap), now + CLOCK_SKEW)


def _future_dated(
    key: str, modified: datetime, id_by_key: dict[str, str], connection_id: str
) -> ErrorEntry:
    return ErrorEntry(
        "listing",
        f"ListingKey {key!r} has ModificationTimestamp {iso(modified)}, in the future; its "
        "status is applied, but the change cursor does not follow it (ask the MLS to fix the "
        "record)",
        connection_id,
        id_by_key.get(key),
        severity="warning",
    )


def _observations(
    answer: BatchAnswer, id_by_key: dict[str, str]
) -> tuple[list[tuple[str, Observation]], list[Failure]]:
    """A by-key answer as what the writer applies: records and removals, and the listings
    whose record could not be read (with why)."""
    observations: list[tuple[str, Observation]] = [
        (id_by_key[k], rec) for k, rec in answer.records.items()
    ]
    observations += [(id_by_key[k], Removed(k, why)) for k, why in answer.removed.items()]
    failures = [
        Failure(id_by_key[k], k, why, _alone(answer, k)) for k, why in answer.errors.items()
    ]
    return observations, failures


def _alone(answer: BatchAnswer, key: str) -> bool | None:
    """What `key`'s error says of its failing alone (`Failure.alone`)."""
    if key in answer.alone:
        return True
    return False if key in answer.answered_alone else None


def _is_new(rec: MlsRecord, latest_seen: dict[str, datetime | None]) -> bool:
    """De-duplicates the overlap window and records repeated across pages."""
    ts = rec.modification_timestamp
    if rec.listing_key in latest_seen:
        previous = latest_seen[rec.listing_key]
        if ts is None or (previous is not None and ts <= previous):
            return False
    latest_seen[rec.listing_key] = ts
    return True
