"""The delivery worker: one task per enabled endpoint follows the event log from the
endpoint's cursor, and sends each event it takes, in order, until it is delivered or given up.

Each endpoint's task is on its own: a slow or dead receiver holds up only its own events,
never the sync, the unpublishing or another endpoint. The database is never held across a
request. While deliveries go through, the answers are recorded in batches beside the sending
(daemon/outbound/recording.py); after a failure, an event is taken (its delivery made, the
cursor moved) in one short transaction, sent with nothing held, and its attempt recorded in
another. A crash between sending and recording sends it again (at least once; the receiver
sees the same `webhook-id`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import anyio
import structlog

from daemon import event_types
from daemon.config import WebhookSettings
from daemon.credentials import require_box
from daemon.encryption import SecretBox
from daemon.enums import DeliveryState
from daemon.failures import log_failure
from daemon.outbound import retry, sender, signing
from daemon.outbound.payload import event_body
from daemon.outbound.recording import Recorder
from daemon.outbound.selection import ALL, wants
from daemon.outbound.urls import UrlPolicy
from daemon.store import events
from daemon.store import webhooks as store
from daemon.store.database import Database
from daemon.store.errors import IntegrityViolation, StoreError
from daemon.store.records import EventRow, WebhookDeliveryRow, WebhookEndpointRow
from daemon.store.until_written import until_written
from daemon.timestamps import iso, parse_iso, utcnow

if TYPE_CHECKING:
    import aiohttp  # made by sender.client: imported there, when a session is made

log = structlog.get_logger("mls_sync.webhooks")

READ_BATCH = 200  # events read per look at the log
IDLE_WAIT = 30.0  # seconds an idle endpoint waits for an event before it looks again
RECHECK = 5.0  # an endpoint waiting to retry looks at its record this often (disabled? removed?)
SUPERVISE_EVERY = 1.0  # new and re-enabled endpoints start within this many seconds
URL_CHECKED_FOR = 5.0  # seconds a check of an endpoint's URL (and its name) serves a stream
STREAM_WAIT = 1.0  # seconds a stream that caught up with the log waits for more before it ends


@dataclass(frozen=True)
class Next:
    """An endpoint's next events as read: `rows` those it takes, in order; `upto` the last
    id read (taken or not); `full`: the read stopped at its limit, more may follow."""

    rows: list[EventRow]
    upto: int
    full: bool


class DeliveryMetrics(Protocol):
    """What the worker counts; how far behind each endpoint is, the daemon measures from
    its own reads (`undelivered_ages`)."""

    def delivery_results(self, result: str, count: int) -> None: ...


def policy_of(settings: WebhookSettings) -> UrlPolicy:
    return UrlPolicy(settings.allow_http_loopback, settings.allow_private_addresses)


def retry_policy_of(settings: WebhookSettings) -> retry.RetryPolicy:
    return retry.RetryPolicy(
        timedelta(seconds=settings.retry_window_seconds),
        timedelta(seconds=settings.max_retry_after_seconds),
    )


def signing_secrets(endpoint: WebhookEndpointRow, box: SecretBox | None, now: str) -> list[str]:
    """The current secret, and the previous one while its overlap lasts."""
    box = require_box(box)  # an endpoint is made only where a key is configured
    found = [box.decrypt(endpoint.secret_encrypted)]
    previous, until = endpoint.previous_secret_encrypted, endpoint.previous_secret_until
    if previous is not None and until is not None and now < until:
        found.append(box.decrypt(previous))
    return found


class Deliveries:
    def __init__(
        self,
        db: Database,
        box: SecretBox | None,
        settings: WebhookSettings,
        metrics: DeliveryMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        wake: events.Waiter | None = None,
        dice: Callable[[], float] = random.random,
        reader: Database | None = None,
    ) -> None:
        self.db = db  # its writes: taking an event, recording an attempt
        # Its reads, on a read-only connection where one is given: beside the sync's writes
        # rather than queued behind them, and never holding them up.
        self.reads = reader or db
        self.box = box
        self.settings = settings
        self.policy = policy_of(settings)
        self.metrics = metrics
        self.clock = clock
        self.wake = wake or events.polling_wake(db)
        self.dice = dice
        self.in_flight = anyio.Semaphore(settings.max_in_flight)
        self.http: aiohttp.ClientSession | None = None
        self.following: set[int] = set()

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Deliveries]:
        """With its HTTP client open: `step` may be called (tests drive it with their clock)."""
        async with sender.client(
            self.settings.timeout_seconds, self.settings.max_in_flight
        ) as http:
            self.http = http
            try:
                yield self
            finally:
                self.http = None

    async def run(self) -> None:
        """Until cancelled (the daemon's stop): an attempt cut short is sent again later."""
        async with self.opened(), anyio.create_task_group() as tg:
            while True:
                try:
                    for endpoint_id in await store.enabled_ids(self.reads):
                        if endpoint_id not in self.following:
                            self.following.add(endpoint_id)
                            tg.start_soon(self._follow, endpoint_id)
                except StoreError as exc:  # looked at again in a second: the daemon goes on
                    log.warning("webhook_endpoints_not_read", error=str(exc))
                await anyio.sleep(SUPERVISE_EVERY)

    async def _follow(self, endpoint_id: int) -> None:
        try:
            while (wait := await self._next(endpoint_id)) is not None:
                if wait > 0:
                    await self._wait(endpoint_id, wait)
        except Exception as exc:
            # Logged, and the endpoint is taken up again by the supervisor (its state is all
            # in the database).
            log_failure(
                log,
                exc,
                "webhook_worker_failed",
                "webhook_worker_database_error",
                endpoint=endpoint_id,
            )
            await anyio.sleep(RECHECK)
        finally:
            self.following.discard(endpoint_id)

    async def _wait(self, endpoint_id: int, seconds: float) -> None:
        endpoint = await store.get(self.reads, endpoint_id)
        if endpoint is None:
            return
        if await store.pending(self.reads, endpoint_id) is None:
            seconds = min(seconds, IDLE_WAIT)
            if not await self.wake(endpoint.cursor, seconds):
                await anyio.sleep(seconds)  # the daemon stops: no more waking, no spinning
        else:
            await anyio.sleep(min(seconds, RECHECK))

    async def _next(self, endpoint_id: int) -> float | None:
        """What `_follow` does next: streams the endpoint's events while they go through,
        else the careful `step` (a delivery is pending: its retry)."""
        endpoint = await store.get(self.reads, endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return None
        if await store.pending(self.reads, endpoint_id) is None:
            return await self._stream(endpoint)
        return await self.step(endpoint_id)

    async def _stream(self, endpoint: WebhookEndpointRow) -> float | None:
        """Sends the endpoint's events one after the other for as long as they go through
        and keep coming, while those answered 2xx are recorded as delivered (their attempts,
        the cursor past them) beside the sending (daemon/outbound/recording.py).

        The log is read from the last event sent, not from the recorded cursor: the sending
        never waits for a record, which may be waiting for the sync's write lock. Caught up,
        the stream waits a moment for more before it ends. It ends at the first failure,
        which becomes a pending delivery with that attempt (the retry rules take over:
        `step`), and when the endpoint changed (disabled, rotated, removed)."""
        recorder = Recorder(
            lambda cursor, batch, upto: self._record_delivered(endpoint.id, cursor, batch, upto),
            endpoint.cursor,
            lambda batch: self._count("delivered", len(batch)),
        )
        position, more = endpoint.cursor, False  # the last event sent or passed over
        failed: tuple[EventRow, sender.Sent, datetime] | None = None
        looks = _Looks(endpoint.url, self.policy, lambda: self._unchanged(endpoint))
        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.run)
            try:
                while True:
                    read = await self._its_next(endpoint, position)
                    failed = await self._send_run(endpoint, read.rows, looks, recorder)
                    if looks.changed:
                        more = True  # its rows not all sent: the endpoint is read again
                    if failed is not None or recorder.stopped or looks.changed:
                        break
                    position = read.upto
                    recorder.passed_over(position)
                    more = read.full or await self._more_after(position)
                    if not more or not await self._unchanged(endpoint):
                        break
            finally:
                recorder.close()
        if recorder.stopped:
            return 0.0  # disabled or moved on meanwhile: look again
        if failed is None:
            return 0.0 if more else IDLE_WAIT
        row, sent, at = failed
        now = await store.get(self.reads, endpoint.id)  # its failing streak as it is now
        if now is None:
            return None  # removed while its request was out
        try:
            delivery = await store.take(self.db, now.id, recorder.cursor, row.id, row.id, iso(at))
            if delivery is not None:
                await self._settle(now, delivery, row.id, sent, at)
        except IntegrityViolation:
            return None  # the endpoint was removed while its request was out
        return 0.0

    async def _send_run(
        self,
        endpoint: WebhookEndpointRow,
        rows: Sequence[EventRow],
        looks: _Looks,
        recorder: Recorder,
    ) -> tuple[EventRow, sender.Sent, datetime] | None:
        """Sends `rows` in order, each answer 2xx handed to the recorder; the first that is
        not, with its answer (the rows after it are not sent). It stops early, returning
        None, when a write is refused (`recorder.stopped`) or the endpoint changed
        (`looks.changed`)."""
        if not rows:
            return None
        # The secrets as of now: the previous one stops signing when its overlap ends, even
        # in the middle of a long stream.
        secrets = signing_secrets(endpoint, self.box, self._now())
        for row in rows:
            refused = await looks.refusal()
            if recorder.stopped or looks.changed:
                return None
            sent = (
                sender.Sent(None, 0, refused, None)
                if refused is not None
                else await self.send(endpoint, row.id, event_body(row), secrets, True)
            )
            at = self.clock()
            if sent.status_code is None or not 200 <= sent.status_code < 300:
                return row, sent, at
            await recorder.add(store.Answered(row.id, _attempt_of(0, sent, at)))
        return None

    async def _more_after(self, position: int) -> bool:
        """Whether events after `position` came within STREAM_WAIT seconds (read after the
        wait: a waiter returns True when its time is up too)."""
        return await self.wake(position, STREAM_WAIT) and (
            await events.last_id(self.reads) > position
        )

    async def _unchanged(self, endpoint: WebhookEndpointRow) -> bool:
        """Whether the endpoint is still enabled and as the stream read it (only enabling,
        disabling and rotating change it: each moves `updated_at`)."""
        now = await store.get(self.reads, endpoint.id)
        return now is not None and bool(now.enabled) and now.updated_at == endpoint.updated_at

    async def _its_next(self, endpoint: WebhookEndpointRow, after: int) -> Next:
        """The endpoint's next events after `after`: those it takes, and how far the log
        was read."""
        patterns = json.loads(endpoint.event_types)
        types = None if ALL in patterns else sorted(event_types.expand(patterns))
        read = await events.after(self.reads, after, types, endpoint.user_id, READ_BATCH)
        full = len(read.rows) == READ_BATCH
        taken = [r for r in read.rows if wants(patterns, endpoint.id, r.type, r.data)]
        return Next(taken, read.rows[-1].id if full else read.upto, full)

    async def _pass_over(self, endpoint_id: int, cursor: int, upto: int) -> None:
        """Moves the cursor past the events read and not taken, up to `upto` (the end of the
        log as read): a waiting endpoint then waits for new events, never for ones it will
        skip."""
        end = max(cursor, upto)
        if end != cursor:
            await store.take(self.db, endpoint_id, cursor, end, None, self._now())

    async def _record_delivered(
        self, endpoint_id: int, cursor: int, answered: Sequence[store.Answered], upto: int
    ) -> bool | None:
        """The record of 2xx answers, tried again while the database is busy (another
        process holding the write lock) and not cut short by a stop. None when the database
        stayed busy: the recorder keeps them and tries again (daemon/outbound/recording.py)."""
        recorded = False

        async def record() -> None:
            nonlocal recorded
            recorded = await store.delivered(self.db, endpoint_id, cursor, answered, upto)

        what = f"webhook deliveries up to event {upto}"
        return recorded if await until_written(record, what) else None

    async def step(self, endpoint_id: int) -> float | None:
        """Does what is due for one endpoint now: takes its next event, or tries its pending
        delivery. Returns how long to wait before the next step (0: go on at once), or None
        when the endpoint is disabled or gone."""
        endpoint = await store.get(self.reads, endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return None
        delivery = await store.pending(self.reads, endpoint_id)
        if delivery is None:
            return await self._take_next(endpoint)
        now = self.clock()
        due = parse_iso(delivery.next_attempt_at) if delivery.next_attempt_at else now
        if due > now:
            return (due - now).total_seconds()
        await self._attempt(endpoint, delivery, now)
        return 0.0

    async def _take_next(self, endpoint: WebhookEndpointRow) -> float:
        """Takes the endpoint's next event (its delivery made, the cursor on it), or passes
        over what it does not take."""
        read = await self._its_next(endpoint, endpoint.cursor)
        if read.rows:
            row = read.rows[0]
            await store.take(self.db, endpoint.id, endpoint.cursor, row.id, row.id, self._now())
            return 0.0
        await self._pass_over(endpoint.id, endpoint.cursor, read.upto)
        return 0.0 if read.full else IDLE_WAIT

    async def _attempt(
        self, endpoint: WebhookEndpointRow, delivery: WebhookDeliveryRow, now: datetime
    ) -> None:
        event = await store.event(self.reads, delivery.event_id)
        if event is None:  # pruned before it could be delivered
            attempt = store.Attempt(delivery.id, iso(now), None, 0, "the event was pruned", None)
            await store.settle(
                self.db, endpoint.id, attempt, store.Settlement(DeliveryState.FAILED)
            )
            return
        sent = await self.send(endpoint, event.id, event_body(event))
        try:
            await self._settle(endpoint, delivery, event.id, sent, self.clock())
        except IntegrityViolation:
            return  # the endpoint was removed while its request was out: nothing to record

    async def _settle(
        self,
        endpoint: WebhookEndpointRow,
        delivery: WebhookDeliveryRow,
        event_id: int,
        sent: sender.Sent,
        at: datetime,
    ) -> None:
        """Records an attempt of the pending `delivery` and what the retry rules make of it."""
        decision = retry.decide(
            sent.status_code,
            sent.retry_after,
            delivery.attempts,
            parse_iso(endpoint.failing_since) if endpoint.failing_since else None,
            at,
            retry_policy_of(self.settings),
            self.dice(),
        )
        next_at = iso(decision.next_attempt_at) if decision.next_attempt_at else None
        settled = store.Settlement(decision.state, next_at, decision.disable_reason)
        await store.settle(self.db, endpoint.id, _attempt_of(delivery.id, sent, at), settled)
        self._report(endpoint, event_id, sent, decision)

    async def send(
        self,
        endpoint: WebhookEndpointRow,
        event_id: int,
        body: str,
        secrets: list[str] | None = None,
        checked: bool = False,
    ) -> sender.Sent:
        """One signed request, under the bound of deliveries in flight (`secrets`: the
        endpoint's, when the caller has them already; `checked`: its URL was just checked)."""
        secrets = secrets or signing_secrets(endpoint, self.box, self._now())
        headers = signing.headers(signing.message_id(event_id), self.clock(), body, secrets)
        assert self.http is not None, "run() opens the client"
        try:  # a free slot is taken without a trip through the event loop
            self.in_flight.acquire_nowait()
        except anyio.WouldBlock:
            await self.in_flight.acquire()
        try:
            return await sender.send(
                self.http,
                endpoint.url,
                body,
                headers,
                self.policy,
                self.settings.timeout_seconds,
                checked,
            )
        finally:
            self.in_flight.release()

    def _report(
        self, endpoint: WebhookEndpointRow, event_id: int, sent: sender.Sent, d: retry.Decision
    ) -> None:
        result = (
            "delivered"
            if d.state == DeliveryState.DELIVERED
            else "given_up"
            if d.state == DeliveryState.FAILED
            else "retry"
        )
        self._count(result, 1)
        if d.disable_reason is not None:
            log.error(
                "webhook_endpoint_disabled",
                endpoint=endpoint.id,
                reason=d.disable_reason,
                note="enable it again once its receiver is fixed: mls-sync webhooks enable",
            )
        elif result == "retry":
            log.warning(
                "webhook_delivery_failed",
                endpoint=endpoint.id,
                event_id=event_id,
                status=sent.status_code,
                error=sent.error,
                next_attempt_at=iso(d.next_attempt_at) if d.next_attempt_at else None,
            )

    def _count(self, result: str, count: int) -> None:
        if self.metrics is not None:
            self.metrics.delivery_results(result, count)

    def _now(self) -> str:
        return iso(self.clock())


async def undelivered_ages(db: Database, now: datetime) -> dict[int, float]:
    """Per enabled endpoint, the age in seconds of its oldest event not yet delivered."""
    oldest = await store.oldest_undelivered(db)
    return {
        endpoint_id: (now - parse_iso(at)).total_seconds() if at else 0.0
        for endpoint_id, at in oldest.items()
    }


class _Looks:
    """What a stream looks at again every URL_CHECKED_FOR seconds (a slow receiver, a long
    stream), not per event: whether the rules still allow the endpoint's URL (its name
    resolved again), and whether the endpoint is as the stream read it (not disabled,
    rotated or removed: the stream then ends, and the endpoint is read again)."""

    def __init__(
        self, url: str, policy: UrlPolicy, unchanged: Callable[[], Awaitable[bool]]
    ) -> None:
        self.url = url
        self.policy = policy
        self.changed = False
        self._unchanged = unchanged
        self._refused: str | None = None
        self._looked_at = -math.inf

    async def refusal(self) -> str | None:
        """Why the URL may not be called now, or None; looks again when it is time."""
        if anyio.current_time() - self._looked_at > URL_CHECKED_FOR:
            self._refused = await sender.refusal(self.url, self.policy)
            self.changed = not await self._unchanged()
            self._looked_at = anyio.current_time()
        return self._refused


def _attempt_of(delivery_id: int, sent: sender.Sent, at: datetime) -> store.Attempt:
    return store.Attempt(
        delivery_id, iso(at), sent.status_code, sent.latency_ms, sent.error, sent.excerpt
    )
