"""The unpublish reconciler (invariant 2): no published post may belong to a listing whose
status is in `unpublish_on`. Asked every cycle, so nothing is lost to a crash or a failed call.

Calls are bounded by a rate limiter per platform and a concurrency slot per account; one
platform failing never stops another. Only one process reconciles at a time (a lease), so a
post is never deleted by two processes at once.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Literal

import anyio
import httpx
import structlog
from aiolimiter import AsyncLimiter

from daemon.config import Settings
from daemon.encryption import SecretBox, SecretKeyError
from daemon.enums import AccountState
from daemon.models import LocalStatus
from daemon.pace import make_limiter
from daemon.platforms.outcomes import (
    AccountCredentials,
    AlreadyGone,
    AuthFailed,
    Deleted,
    NeedsPerson,
    Outcome,
    PlatformAdapter,
    PostTarget,
    RetryLater,
    retry_delay,
)
from daemon.platforms.registry import REGISTRY, AdapterWiring
from daemon.store import accounts, posts, runs
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.store.group_commit import GroupWriter
from daemon.store.posts import DueScope
from daemon.store.records import AccountRow, DuePost
from daemon.store.runs import Counts, ErrorEntry
from daemon.store.session import Session
from daemon.store.until_written import until_written
from daemon.sync.pools import within_pools
from daemon.sync.unpublish_lease import UnpublishLease
from daemon.timestamps import iso

log = structlog.get_logger("mls_sync.unpublish")

# Outcomes are written when this many are waiting, or when the oldest has waited this long.
FLUSH_POSTS = 100
FLUSH_SECONDS = 0.5
# How long the pass's last write keeps trying (the database error that held the outcomes back
# may be a lock that passes).
LAST_WRITE_SECONDS = 10.0


# The lease of the pass whose post is being taken down, for the calls an adapter makes after
# its first (they go through `_another_call`, which knows the platform, not the pass).
_pass_lease: ContextVar[UnpublishLease | None] = ContextVar("unpublish_pass_lease", default=None)


class _LeaseRanOut(Exception):
    """Raised by `_another_call` out of an adapter: the lease ran out (before or during the
    wait), so the call must not go out; the post gets no outcome (the next pass checks it)."""


def _unless_lease_ran_out() -> None:
    """Inside a pass's call (`_pass_lease` set): raises _LeaseRanOut once its lease ran out."""
    lease = _pass_lease.get()
    if lease is not None and not lease.still_running():
        raise _LeaseRanOut


# What recording a DELETE before sending it came to: send it; the post is no longer as the
# pass read it (no DELETE); the lease was lost (no DELETE, the pass stops).
Sending = Literal["send", "changed", "lease lost"]


@dataclass(frozen=True)
class PostResult:
    """What one pass did with one post it was asked about: every such post gets one."""

    post_id: str
    listing_id: str
    account_id: str
    platform: str
    # None: waiting (its account is not active, failed this run or cannot be read; another
    # process holds the lease; the pass stopped first), `detail` says which.
    outcome: Outcome | None
    detail: str

    @property
    def outcome_name(self) -> str:
        return type(self.outcome).__name__ if self.outcome else "Waiting"


@dataclass(frozen=True)
class _Settled:
    """An outcome noted and not yet written."""

    post: DuePost
    platform: str
    outcome: Outcome
    delay: float | None  # seconds until the next try (failures only)
    retry_at: str | None
    noted_at: float = field(default_factory=time.monotonic)

    def attempt(self) -> posts.Attempt:
        outcome = self.outcome
        if isinstance(outcome, Deleted | AlreadyGone):
            return posts.Attempt(self.post.id, "done", outcome.note)
        if isinstance(outcome, NeedsPerson):
            return posts.Attempt(self.post.id, "manual", outcome.reason)
        refused = isinstance(outcome, RetryLater) and outcome.refused
        return posts.Attempt(
            self.post.id, "refused" if refused else "failed", outcome.reason, self.retry_at
        )


@dataclass
class _Pass:
    run_id: int
    lease: UnpublishLease
    # Records "a DELETE is going out" for each post before its call, fenced by the lease.
    sending: GroupWriter[DuePost, Sending]
    creds: dict[str, AccountCredentials] = field(default_factory=dict)
    results: list[PostResult] = field(default_factory=list)
    pending: list[_Settled] = field(default_factory=list)  # noted, not yet written
    auth_failed: set[str] = field(default_factory=set)
    auth_reported: set[str] = field(default_factory=set)  # one account error per run
    counts: Counts = field(default_factory=Counts)
    unwritten: int = 0  # outcomes not written: the lease was lost
    # After a write that failed (a database lock, say), the next try waits until then.
    next_write_at: float = 0.0
    # Each post's task while it runs, and the posts whose DELETE is out (`stop_waiting`).
    tasks: dict[str, anyio.CancelScope] = field(default_factory=dict)
    on_the_wire: set[str] = field(default_factory=set)

    def stop_waiting(self) -> None:
        """The lease is lost: every post still waiting (for a slot, a rate token, its mark,
        its read) stops, and no DELETE goes out from now on (`still_running`). A DELETE
        already out is let finish: stopping it would not unsend it, only lose its answer,
        and the platform could carry it out after this process's next pass read the post
        as still there and deleted it again."""
        for post_id, scope in self.tasks.items():
            if post_id not in self.on_the_wire:
                scope.cancel()


class Unpublisher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        box: SecretBox | None,
        http: Mapping[str, httpx.AsyncClient],  # by platform
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.settings = settings.platforms
        self.unpublish_on = settings.sync.unpublish_on
        # The unpublish pass's lease lasts as a connection's does: a daemon that dies while
        # taking posts down holds the pass back no longer than it would hold a connection.
        self.lease_seconds: float = settings.sync.lease_seconds
        self.box = box
        self.clock = clock
        self._http = http
        self.adapters = self._adapters()
        self._rates: dict[str, AsyncLimiter] = {}
        self._slots: dict[str, anyio.CapacityLimiter] = {}
        # Every delete takes one of these, and the HTTP pool has as many connections, so no
        # request ever waits inside the pool (profiled: a queue there made 10,000 deletes
        # quadratic, 241 s of CPU instead of 11).
        self._in_flight = anyio.CapacityLimiter(settings.platforms.max_concurrent_requests)
        self._pool_size = settings.platforms.max_concurrent_requests  # the clients' own
        # The due posts this process's passes have read, until they are no longer due.
        self._read_when_due: set[str] = set()

    def unread(self, due: Iterable[DuePost]) -> list[DuePost]:
        """Of the posts due now, those no pass of this process has read since they fell due
        (daemon/sync/engine.py `_unpublish_left_unfinished`). A post no longer due is
        forgotten: due again later, it is unread again."""
        due = list(due)
        self._read_when_due.intersection_update(p.id for p in due)
        return [p for p in due if p.id not in self._read_when_due]

    def _adapters(self) -> dict[str, PlatformAdapter]:
        """Each platform's adapter, on the settings in effect (its API's address and version).
        A call an adapter makes after the first (Graph's read of the page after 100/33,
        LinkedIn's DELETE again after a token refresh) waits for a rate token too."""
        return {
            name: entry.adapter(
                AdapterWiring(
                    self._http[name],
                    self.settings,
                    partial(self._another_call, name),
                    self._save_token,
                )
            )
            for name, entry in REGISTRY.items()
        }

    def apply(self, settings: Settings) -> None:
        """A reload: new limits, addresses, API versions and timeouts, from the next call
        (limiters are made again on first use); the bound on calls in flight only up to the
        clients' pool size (see `_in_flight`, `pools.within_pools`)."""
        self.settings = settings.platforms
        self.unpublish_on = settings.sync.unpublish_on
        self.lease_seconds = settings.sync.lease_seconds
        self._rates.clear()
        self._slots.clear()
        self._in_flight.total_tokens = within_pools(
            "platforms", settings.platforms.max_concurrent_requests, self._pool_size
        )
        timeout = httpx.Timeout(settings.platforms.timeout_seconds)
        for client in self._http.values():
            client.timeout = timeout
        self.adapters = self._adapters()

    async def reconcile(self, run_id: int, scope: DueScope) -> list[PostResult]:
        """Takes down every due post in `scope`; returns what happened to each."""

        async def due() -> list[DuePost]:
            now = iso(self.clock())
            return await posts.due_for_unpublish(self.db, self.unpublish_on, now, scope)

        return await self._take_down(run_id, due, self.unpublish_on)

    async def unpublish_listing(self, run_id: int, listing_id: str) -> list[PostResult]:
        """Every published post of one listing taken down now, whatever the listing's status
        and whatever backoff a post is in."""
        return await self._take_down(
            run_id, partial(posts.published_of_listing, self.db, listing_id), None
        )

    # -- one pass ----------------------------------------------------------------------------

    async def _take_down(
        self,
        run_id: int,
        read_due: Callable[[], Awaitable[list[DuePost]]],
        listing_statuses: Sequence[LocalStatus] | None,
    ) -> list[PostResult]:
        """A result for each due post, none left out: no result means no post. The posts
        are read again once the lease is held: another process may have sent their DELETEs
        (or taken them down) since the first look, which only spares a lease when none is due.
        `listing_statuses`: a post's DELETE goes out only while its listing's status is one of
        them, as the transaction that marks it sent reads it (None: whatever the status)."""
        first_look = await read_due()
        if not first_look:
            return []
        lease = UnpublishLease(self.db, self.clock, self.lease_seconds)
        if not await lease.acquire():
            rows = await accounts.for_ids(self.db, sorted({p.account_id for p in first_look}))
            await self._record(
                run_id,
                Counts(warnings=1),
                ErrorEntry(
                    "run",
                    "skipped unpublishing: another process is taking posts down right now",
                    severity="warning",
                ),
            )
            return _waiting(first_look, rows, ANOTHER_PROCESS)
        mark = partial(_mark_sending, lease, self.clock, listing_statuses)
        work = _Pass(run_id, lease, GroupWriter(self.db, mark))
        try:
            due = await read_due()
            self._read_when_due.update(p.id for p in due)
            rows = await accounts.for_ids(self.db, sorted({p.account_id for p in due}))
            await self._under_lease(work, rows, due)
            unfinished = {p.id for p in due} - {r.post_id for r in work.results}
            return work.results + _waiting([p for p in due if p.id in unfinished], rows, CUT_OFF)
        finally:  # a busy database must not leave the lease held (10 minutes of skips)
            await until_written(lease.release, "free the unpublish lease")
            if lease.lost:
                entry = _lease_lost(work.unwritten)
                await until_written(
                    partial(self._record, run_id, Counts(errors=1), entry), "record the lost lease"
                )

    async def _under_lease(
        self, work: _Pass, rows: dict[str, AccountRow], due: Sequence[DuePost]
    ) -> None:
        """The pass, with its lease renewed while it runs; losing the lease stops it."""
        ready = await self._ready_accounts(work, rows, due)
        async with anyio.create_task_group() as keeper, work.sending.running():
            keeper.start_soon(work.lease.keep, work.stop_waiting)
            try:
                async with anyio.create_task_group() as tg:
                    for post in due:
                        if post.account_id in ready:
                            tg.start_soon(self._one, work, post, rows[post.account_id].platform)
            finally:
                with anyio.CancelScope(shield=True):  # what was done is written, even now
                    await self._flush_last(work)
            keeper.cancel_scope.cancel()

    async def _ready_accounts(
        self, work: _Pass, rows: dict[str, AccountRow], due: Sequence[DuePost]
    ) -> set[str]:
        """Decrypts the tokens of active accounts; every other account gets one message, and
        its posts a waiting result saying why."""
        ready: set[str] = set()
        for account_id in sorted({p.account_id for p in due}):
            row = rows[account_id]
            if row.state != AccountState.ACTIVE:
                await self._wait_for(work, row, [p for p in due if p.account_id == account_id])
                continue
            try:
                work.creds[account_id] = self._credentials(row)
            except SecretKeyError as exc:
                why = f"cannot read the tokens of account {account_id}: {exc}"
                await self._record(work.run_id, Counts(errors=1), ErrorEntry("account", why))
                work.results += _waiting([p for p in due if p.account_id == account_id], rows, why)
                continue
            ready.add(account_id)
        return ready

    async def _wait_for(self, work: _Pass, row: AccountRow, waiting: list[DuePost]) -> None:
        """An account that is not active: one warning in the run, and each of its posts in
        the results as waiting, with why (so a listing's posts never look absent)."""
        why = f"{row.platform} account {row.id} is {row.state}"
        reason = row.last_error or "no reason recorded"
        await self._record(
            work.run_id,
            Counts(warnings=1),
            ErrorEntry(
                "account", f"{why}: {len(waiting)} post(s) wait ({reason})", severity="warning"
            ),
        )
        if row.state == AccountState.NEEDS_REAUTH:
            reason += f"; a new token (`mls-sync accounts add --id {row.id}`) re-activates it"
        work.results += _waiting(waiting, {row.id: row}, f"{why} ({reason})")

    def _credentials(self, row: AccountRow) -> AccountCredentials:
        if self.box is None:
            raise SecretKeyError("no secret key is configured")
        decrypt = self.box.decrypt
        return AccountCredentials(
            id=row.id,
            platform=row.platform,
            connected_via=row.connected_via,
            access_token=decrypt(row.access_token_encrypted),
            refresh_token=decrypt(row.refresh_token_encrypted)
            if row.refresh_token_encrypted
            else None,
            client_id=row.client_id,
            client_secret=(
                decrypt(row.client_secret_encrypted) if row.client_secret_encrypted else None
            ),
        )

    async def _one(self, work: _Pass, post: DuePost, platform: str) -> None:
        with anyio.CancelScope() as scope:  # cancelled by `stop_waiting` unless on the wire
            work.tasks[post.id] = scope
            if work.lease.lost:
                scope.cancel()
            try:
                outcome = await self._attempt(work, post, platform)
                if outcome is None:
                    return
                settled = self._settle(post, platform, outcome)
            except Exception as exc:  # a bug or a malformed record: this post's outcome only
                settled = _Settled(post, platform, _unexpected(post, exc), None, None)
            finally:
                del work.tasks[post.id]
        if scope.cancelled_caught:
            return
        if work.lease.lost:  # its answer came after the lease was lost: fenced out, unwritten
            work.unwritten += 1
            work.results.append(
                PostResult(post.id, post.listing_id, post.account_id, platform, None, LATE)
            )
            return
        await self._note(work, settled)

    async def _attempt(self, work: _Pass, post: DuePost, platform: str) -> Outcome | None:
        """One delete call; None when the post is skipped (its account failed auth)."""
        async with self._slot(post.account_id):
            if post.account_id in work.auth_failed:
                work.results.append(
                    PostResult(
                        post.id,
                        post.listing_id,
                        post.account_id,
                        platform,
                        None,
                        "not tried: the account failed auth in this run",
                    )
                )
                return None
            # The rate first: a slot of the global bound is held only while a call is out, so
            # one platform's waiting posts never starve another platform.
            await self._rate(platform).acquire()
            try:  # recorded after the rate wait, so the mark is never older than needed
                sending = await work.sending.submit(post)
            except StoreError as exc:  # busy with another process, say: no call, try later
                return RetryLater(f"could not record the DELETE before sending it: {exc}")
            if sending == "lease lost":
                return None  # no call (the pass is stopping)
            if sending == "changed":
                work.results.append(
                    PostResult(post.id, post.listing_id, post.account_id, platform, None, CHANGED)
                )
                return None
            async with self._in_flight:
                outcome = await self._check_then_delete(work, post, platform)
            if isinstance(outcome, AuthFailed):
                # Noted before the slot is freed, so no queued post of this account goes out.
                work.auth_failed.add(post.account_id)
        return outcome

    async def _check_then_delete(self, work: _Pass, post: DuePost, platform: str) -> Outcome | None:
        """The DELETE; if one was sent before and its answer never recorded (a crash, a
        timeout, a failed try), a read first, and a DELETE only if the post is still there.
        None when the lease ran out meanwhile: a successor may be taking the post down."""
        token = _pass_lease.set(work.lease)  # for the adapter's further calls (_another_call)
        try:
            return await self._calls(work, post, platform)
        except _LeaseRanOut:
            return None
        finally:
            _pass_lease.reset(token)

    async def _calls(self, work: _Pass, post: DuePost, platform: str) -> Outcome | None:
        adapter, target = self.adapters[platform], PostTarget(post.id, post.platform_post_id)
        creds = work.creds[post.account_id]
        if post.delete_sent_at is not None:
            checked = await adapter.check(target, creds)
            if isinstance(checked, RetryLater):  # a read refused says nothing of the DELETE
                return replace(checked, refused=False)
            if checked is not None:
                return checked
            await self._another_call(platform)  # the DELETE is a second call
        if not work.lease.still_running():  # the last moment: after every wait, before sending
            return None
        work.on_the_wire.add(post.id)  # from here, a lost lease no longer stops this post
        return await adapter.delete(target, creds)

    def _settle(self, post: DuePost, platform: str, outcome: Outcome) -> _Settled:
        """An outcome with its next try, for a failure."""
        delay = None
        if isinstance(outcome, RetryLater):
            delay = retry_delay(
                post.attempts + 1,
                self.settings.retry_initial_seconds,
                self.settings.retry_max_seconds,
                outcome.retry_after,
            )
        elif isinstance(outcome, AuthFailed):
            delay = 0.0  # due again as soon as the account is connected again
        retry_at = iso(self.clock() + timedelta(seconds=delay)) if delay is not None else None
        return _Settled(post, platform, outcome, delay, retry_at)

    async def _note(self, work: _Pass, settled: _Settled) -> None:
        """Notes an outcome; outcomes are written in batches (one transaction per batch, not
        per post: profiled, that was a quarter of the CPU of 10,000 deletes). A crash before
        a batch is written only means those posts are found again next cycle, with the DELETE
        they were sent recorded: each is read before any second DELETE (invariant 2)."""
        post, platform, outcome = settled.post, settled.platform, settled.outcome
        work.pending.append(settled)
        work.results.append(
            PostResult(
                post.id, post.listing_id, post.account_id, platform, outcome, _detail(outcome)
            )
        )
        # One line per post at debug; at info, one line per batch written (_flush): 10,000
        # deletes are 100 lines in the journal, not 10,000 (and a twentieth of the CPU).
        log.debug(
            "post_outcome",
            post_id=post.id,
            listing_id=post.listing_id,
            platform=platform,
            outcome=type(outcome).__name__,
            detail=_detail(outcome),
        )
        if _write_due(work):
            await self._flush(work)

    async def _flush_last(self, work: _Pass) -> None:
        """The pass's last write: tried again while a database error lets up, for a while."""

        async def last() -> None:
            if not await self._flush(work):  # it logged the error and kept the outcomes
                raise StoreError("the outcomes are not written yet")

        what = f"the outcomes of {len(work.pending)} post(s)"
        if not await until_written(last, what, LAST_WRITE_SECONDS):
            log.error("outcomes_not_written", posts=len(work.pending))

    async def _flush(self, work: _Pass) -> bool:
        """Writes the outcomes noted so far, with their counts and messages, in one
        transaction. On a database error they stay noted, for the next write; False then.
        Cancelled (a shutdown, a lost lease), they stay noted too: the pass's last write,
        shielded, still has them."""
        batch, work.pending = work.pending, []
        if not batch:
            return True
        try:
            await self._write(work, batch)
        except StoreError as exc:
            work.pending[:0] = batch
            work.next_write_at = time.monotonic() + FLUSH_SECONDS
            log.warning("outcomes_not_written_yet", posts=len(batch), error=str(exc))
            return False
        except BaseException:
            work.pending[:0] = batch
            raise
        return True

    async def _write(self, work: _Pass, batch: list[_Settled]) -> None:
        at = iso(self.clock())
        counts, entries = Counts(), []
        reported = set(work.auth_reported)  # kept only if the transaction commits
        async with self.db.transaction() as conn:
            if not await work.lease.held_in(conn):  # fenced: a lost lease writes nothing
                work.unwritten += len(batch)
                return
            fresh = await posts.record_attempts(conn, [s.attempt() for s in batch], at)
            for settled in batch:
                entries += _account_for(settled, settled.post.id in fresh, reported, counts)
                if isinstance(settled.outcome, AuthFailed):
                    await accounts.mark_needs_reauth(
                        conn, settled.post.account_id, settled.outcome.reason, at
                    )
            await runs.record(conn, work.run_id, counts, entries, at)
        work.counts.add(counts)
        work.auth_reported = reported
        outcomes = Counter(type(s.outcome).__name__ for s in batch)
        log.info(
            "posts_settled",
            outcomes=dict(sorted(outcomes.items())),
            taken_down=[s.post.id for s in batch if isinstance(s.outcome, Deleted | AlreadyGone)],
            not_taken_down=[
                s.post.id for s in batch if not isinstance(s.outcome, Deleted | AlreadyGone)
            ],
        )

    async def _record(self, run_id: int, counts: Counts, entry: ErrorEntry) -> None:
        await runs.record_now(self.db, run_id, counts, [entry], iso(self.clock()))

    async def _save_token(self, account_id: str, token: str, lifetime: float | None) -> None:
        """A refreshed LinkedIn token, stored encrypted and used from now on. If the database
        cannot take it (another process holds it, say), the pass goes on with the token in
        memory: the DELETE it was refreshed for still goes out, and the next pass refreshes
        (and saves) it again."""
        if self.box is None:
            return
        now = self.clock()
        expires = iso(now + timedelta(seconds=lifetime)) if lifetime else None
        try:
            await accounts.save_access_token(
                self.db, account_id, self.box.encrypt(token), expires, iso(now)
            )
        except StoreError as exc:
            log.warning("refreshed_token_not_saved", account_id=account_id, error=str(exc))
            return
        log.info("token_refreshed", account_id=account_id)

    async def _another_call(self, platform: str) -> None:
        """Before a post's next call (with a slot of the global bound held for its first):
        its own rate token, waited for with the slot let go, as for the first. Then the
        lease, as before the first: the wait may have outlasted it (LinkedIn's DELETE again
        after a token refresh must not go out then)."""
        _unless_lease_ran_out()  # no wait for a call that will not go out
        self._in_flight.release()
        try:
            await self._rate(platform).acquire()
        finally:
            with anyio.CancelScope(shield=True):  # the caller's `async with` releases it
                await self._in_flight.acquire()
        _unless_lease_ran_out()

    def _rate(self, platform: str) -> AsyncLimiter:
        if platform not in self._rates:
            self._rates[platform] = make_limiter(self.settings.rate_for(platform))
        return self._rates[platform]

    def _slot(self, account_id: str) -> anyio.CapacityLimiter:
        if account_id not in self._slots:
            self._slots[account_id] = anyio.CapacityLimiter(
                self.settings.max_concurrent_per_account
            )
        return self._slots[account_id]


def _account_for(
    settled: _Settled, was_published: bool, reported: set[str], counts: Counts
) -> list[ErrorEntry]:
    """Adds one outcome to the run's counts; returns the messages it leaves in the history
    (an account's auth failure once per run, not once per post: `reported` has the accounts
    whose failure is written already)."""
    post, outcome = settled.post, settled.outcome
    where = f"{settled.platform} post {post.platform_post_id} ({post.id})"
    if isinstance(outcome, Deleted | AlreadyGone):
        if was_published:  # a post already marked done by someone else is not counted again
            if isinstance(outcome, Deleted):
                counts.posts += 1
            else:
                counts.posts_gone += 1
        return []
    if isinstance(outcome, NeedsPerson):
        counts.posts_manual += 1
        counts.warnings += 1
        return [
            ErrorEntry(
                "post",
                f"{where} needs a person: {outcome.reason}",
                listing_id=post.listing_id,
                severity="warning",
            )
        ]
    counts.posts_failed += 1
    counts.errors += 1
    if isinstance(outcome, AuthFailed):
        if post.account_id in reported:
            return []
        reported.add(post.account_id)
        return [
            ErrorEntry(
                "account",
                f"{settled.platform} account {post.account_id}: {outcome.reason}",
                listing_id=post.listing_id,
            )
        ]
    return [
        ErrorEntry(
            "post",
            f"{where}: {outcome.reason}; next try in {settled.delay or 0:.0f} s",
            listing_id=post.listing_id,
        )
    ]


def _write_due(work: _Pass) -> bool:
    """Whether the outcomes noted are due to be written: enough of them, or the oldest has
    waited long enough (and a write that failed is not retried at once)."""
    now = time.monotonic()
    if not work.pending or now < work.next_write_at:
        return False
    return len(work.pending) >= FLUSH_POSTS or now - work.pending[0].noted_at >= FLUSH_SECONDS


async def _mark_sending(
    lease: UnpublishLease,
    clock: Callable[[], datetime],
    listing_statuses: Sequence[LocalStatus] | None,
    conn: Session,
    copies: Sequence[DuePost],
) -> list[Sending]:
    """For the group writer: the DELETEs about to go out, committed before they do. None
    when the lease was lost; none for a post no longer as its copy shows it, or whose
    listing's status is no longer one of `listing_statuses` (changed: a listing back on the
    market while the pass waited to send keeps its posts; a DELETE cannot be taken back)."""
    if not await lease.held_in(conn):
        return ["lease lost"] * len(copies)
    marked = await posts.mark_delete_sent(conn, copies, iso(clock()), listing_statuses)
    return ["send" if c.id in marked else "changed" for c in copies]


ANOTHER_PROCESS = (
    "not tried: another process is taking posts down right now (it holds the unpublish "
    "lease); try again once it is done"
)
CHANGED = (
    "not tried: the post or its listing changed since this pass read it (another process "
    "sent its DELETE, took it down or recorded it again, or the listing is no longer in a "
    "status that takes posts down); the next pass checks it"
)
CUT_OFF = (
    "not finished: the pass stopped before this post's outcome was known (its lease was "
    "lost); the next pass checks it"
)
LATE = (
    "not recorded: its DELETE was answered after the pass lost its lease; the next pass checks it"
)


def _waiting(
    waiting: Sequence[DuePost], rows: Mapping[str, AccountRow], why: str
) -> list[PostResult]:
    return [
        PostResult(p.id, p.listing_id, p.account_id, rows[p.account_id].platform, None, why)
        for p in waiting
    ]


def _lease_lost(unwritten: int) -> ErrorEntry:
    return ErrorEntry(
        "run",
        "unpublishing stopped: its lease expired or was taken over (this process was paused "
        f"or too slow); {unwritten} outcome(s) not written, the next pass checks those posts "
        "again",
    )


def _unexpected(post: DuePost, exc: Exception) -> NeedsPerson:
    """An error no adapter expected. Its text is not kept (it may quote a token, as a bad
    header value does); its type and where it was raised are."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    log.error("post_failed_unexpectedly", post_id=post.id, error=type(exc).__name__, where=where)
    return NeedsPerson(
        f"unexpected {type(exc).__name__}{where} while taking it down; check its "
        "platform_post_id, or report this as a bug"
    )


def _detail(outcome: Outcome) -> str:
    if isinstance(outcome, Deleted | AlreadyGone):
        return outcome.note
    return outcome.reason
