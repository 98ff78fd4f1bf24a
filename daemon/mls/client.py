"""Talking to one RESO server: every request is bounded, retried and classified here.

Order per request (docs/runtime.md): this credential's turn first, then a slot of the global
concurrency bound, so the wait for a turn is never spent holding a slot; and the moment the
request goes out, on an open connection, is spaced from the credential's last (daemon/pace.py).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache, partial
from typing import NoReturn, Protocol, TypeVar

import anyio
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from daemon.enums import KeyFilter
from daemon.mls.auth import Extensions, TokenSource
from daemon.mls.encoded_url import url_of
from daemon.mls.engine_client import EngineClient
from daemon.mls.entity_events import EventPage, parse_event_page
from daemon.mls.errors import (
    CircuitOpen,
    ConnectionStopped,
    CursorStuck,
    MlsError,
    NeedsReauth,
    OutOfOrder,
    QueryFailed,
    RequestTooLong,
    Retryable,
    ServerError,
    ServerUnreachable,
    TokenEndpointDown,
    TokenUnavailable,
)
from daemon.mls.isolation import IsolationBudget
from daemon.mls.metadata import parse_metadata
from daemon.mls.payload import BadPayload, Page, parse_changes_page, parse_page
from daemon.mls.query import (
    by_key_url,
    changes_after_url,
    changes_url,
    entity_events_url,
    last_event_url,
    metadata_url,
    page_size_preference,
)
from daemon.mls.transport import answer_summary, transport_cause
from daemon.models import MlsRecord
from daemon.pace import CredentialPace

MAX_PAGES = 10_000  # a nextLink chain longer than this is a server bug, not data


class _Paged(Protocol):
    @property
    def next_link(self) -> str | None: ...


P = TypeVar("P", bound=_Paged)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 120.0
    breaker_after_429s: int = 3


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask one connection's server."""

    connection_id: str
    base_url: str
    resource: str = "Property"
    key_filter: KeyFilter = KeyFilter.IN
    page_size: int = 200
    select: str = "ListingKey,StandardStatus,MlsStatus,ModificationTimestamp"


@dataclass
class BatchAnswer:
    """The MLS's answer for a set of keys: each key is in exactly one of the three."""

    records: dict[str, MlsRecord] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # Of `errors`, the keys a query of their own failed (`MlsClient.fails_alone`).
    alone: set[str] = field(default_factory=set)
    # Keys known to fail alone whose query of their own the server answered, even with a
    # record that cannot be read: they fail alone no more.
    answered_alone: set[str] = field(default_factory=set)

    def merge(self, other: BatchAnswer) -> None:
        self.records.update(other.records)
        self.removed.update(other.removed)
        self.errors.update(other.errors)
        self.alone |= other.alone
        self.answered_alone |= other.answered_alone


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After is delay-seconds or an HTTP date (RFC 9110 10.2.3); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def retry_wait(
    policy: RetryPolicy, attempts: int, retry_after: float | None, jitter: float
) -> float:
    """Seconds before the next try after `attempts` failed ones: what the server asked
    (Retry-After, capped before it gets here), else doubling from `backoff_initial` plus
    `jitter`, at most `backoff_max`."""
    if retry_after is not None:
        return retry_after
    # 2**60 times any initial delay is past any maximum; a larger power overflows a float.
    backoff = policy.backoff_initial * 2.0 ** min(attempts - 1, 60) + jitter
    return max(0.0, min(backoff, policy.backoff_max))


def _worth_again(failed: BaseException, retry_server_errors: bool) -> bool:
    """Whether a page's failed attempt is followed by another (while attempts are left)."""
    return isinstance(failed, Retryable) and (
        retry_server_errors or not isinstance(failed, ServerError)
    )


class MlsClient:
    def __init__(
        self,
        http: EngineClient,
        endpoint: Endpoint,
        tokens: TokenSource,
        pace: CredentialPace,
        concurrency: anyio.CapacityLimiter,
        policy: RetryPolicy,
        on_request: Callable[[], None] = lambda: None,
        fails_alone: set[str] | None = None,
    ) -> None:
        self.http = http
        self.endpoint = endpoint
        self.tokens = tokens
        self.pace = pace
        self.concurrency = concurrency
        self.policy = policy
        self.on_request = on_request
        self.consecutive_429s = 0
        self.unanswered = 0  # attempts in a row that got no answer (connect error, timeout)
        self.stopped: MlsError | None = None
        self._origin = _origin_of(endpoint.base_url)
        self._prefer = page_size_preference(endpoint.page_size)
        self._urls: dict[tuple[str, ...], httpx.URL] = {}
        self._extensions: Extensions = {"trace": pace.trace}
        self.isolation = IsolationBudget()
        self._isolating = anyio.Lock()
        # The keys a query of their own failed (`_isolate`): each is asked alone, first, so
        # that its batch is not split down to it again, within a budget a few such keys used
        # up (docs/reliability.md "One key the server fails on"). Kept per connection by
        # whoever makes its clients (daemon/sync/access.py), with those the store knew when
        # the sync's run began: each key found is written there with its listing's error
        # (`BatchAnswer.alone`), so that a daemon restarted, or another one taking the
        # connection over, knows them from its first sync.
        self.fails_alone: set[str] = set() if fails_alone is None else fails_alone

    # -- queries -----------------------------------------------------------------------------

    def by_key_url(self, keys: Sequence[str]) -> httpx.URL:
        """Built once per batch: the length check makes it, the request reuses it (building a
        50-key URL is a measurable share of a cycle's CPU)."""
        cache_key = tuple(keys)
        url = self._urls.pop(cache_key, None)
        if url is None:
            e = self.endpoint
            url = by_key_url(e.base_url, e.resource, keys, e.key_filter, e.select)
        return url

    def url_length(self, keys: Sequence[str]) -> int:
        url = self.by_key_url(keys)
        self._urls[tuple(keys)] = url  # kept for the request that follows
        return len(str(url))

    async def fetch_batch(self, keys: Sequence[str]) -> BatchAnswer:
        """Current status of `keys`. Keys the server leaves out count as removed; a 413/414
        splits the batch in two and asks again; a batch the server fails with an error of its
        own is asked again in halves, so that one key it fails on fails alone (`_isolate`)."""
        if len(keys) == 1 and keys[0] in self.fails_alone:
            return await self._ask_alone_again(keys[0])
        try:
            return await self._fetch(keys)
        except QueryFailed as failure:
            if len(keys) == 1:
                raise
            # One batch split at a time: the budget judges each split with what the one
            # before it found (a server failing every query stops the splitting).
            async with self._isolating:
                if not self.isolation.split():
                    raise
                alone: list[str] = []
                answer, answered = await self._isolate(keys, failure, alone)
            if not answered:
                raise  # no part answered: the batch fails whole, as it would have
            # Only now: with no part answered, the server may be failing every query, and
            # a key whose half failed last says nothing of that key.
            self.fails_alone.update(alone)
            return answer

    async def _fetch(
        self, keys: Sequence[str], retry_server_errors: bool = True, again: bool = False
    ) -> BatchAnswer:
        """One query for `keys` (two, or more, if the server finds it too long). A key in
        none of the pages of an answer of several is asked again before it counts as
        removed: the server's nextLink may go on by offset, and a record that left the
        feed between two pages shifts the offset past one that did not. Such keys are asked
        again together; if that answer too has several pages (`again`), each alone: an
        answer for one key has no other record to shift it (docs/mls-paging.md)."""
        url = self.by_key_url(keys)
        try:
            pages = [page async for page in self.pages(url, parse_page, retry_server_errors)]
        except RequestTooLong:
            if len(keys) == 1:  # that key's alone: the rest of its batch is answered
                return BatchAnswer(errors={keys[0]: TOO_LONG_ALONE})
            middle = len(keys) // 2
            answer = await self._fetch(keys[:middle], retry_server_errors, again)
            answer.merge(await self._fetch(keys[middle:], retry_server_errors, again))
            return answer
        answer, absent = _answer_for(keys, pages)
        if absent and again:
            for key in absent:
                answer.merge(await self._fetch([key], retry_server_errors))
        elif absent:
            answer.merge(await self._fetch(absent, retry_server_errors, again=True))
        return answer

    async def _ask_alone_again(self, key: str) -> BatchAnswer:
        """A key whose query of its own failed in an earlier sync: its error again, with no
        second try of a server's fault (as a half's), or its answer, and then it goes back
        into batches (the server answers for it now)."""
        try:
            answer = await self._fetch([key], retry_server_errors=False)
        except QueryFailed as failure:
            return self.failed_alone(key, failure)
        self.fails_alone.discard(key)
        answer.answered_alone.add(key)
        return answer

    def failed_alone(self, key: str, failure: QueryFailed) -> BatchAnswer:
        """The answer for `key`, whose query of its own failed with `failure` while the
        server answers other queries of the sync: that error, and the key remembered as
        one to ask alone (`fails_alone`)."""
        self.fails_alone.add(key)
        return BatchAnswer(errors={key: _fails_alone(failure)}, alone={key})

    async def _isolate(
        self, keys: Sequence[str], failure: QueryFailed, alone: list[str]
    ) -> tuple[BatchAnswer, bool]:
        """`keys`, whose query failed with `failure`, asked again in halves: a half answered
        is the answer for its keys; a half that fails is halved again while the sync's
        budget allows (daemon/mls/isolation.py), down to the key the server fails on alone,
        which gets the error. A half's 5xx is not tried again: the batch's own tries showed
        it is no passing fault, and a half failed by one is only split further. A half that
        fails otherwise (the server busy, throttled, out of reach) is not split: its keys
        get that error, and what the other half answered is kept. Gives the answer, and
        whether any part of `keys` was answered (when none was, the server may be failing
        every query); adds the keys that failed alone to `alone`."""
        answer, answered = BatchAnswer(), False
        middle = len(keys) // 2
        for half in (keys[:middle], keys[middle:]):
            if self.isolation.given_up():
                answer.errors.update(dict.fromkeys(half, _unsplit(len(half), failure)))
                continue
            try:
                answer.merge(await self._fetch(half, retry_server_errors=False))
                answered = True
                continue
            except QueryFailed as exc:
                failure = exc
            except ConnectionStopped:
                raise
            except MlsError as exc:
                answer.errors.update(dict.fromkeys(half, f"not checked: {exc}"))
                continue
            self.isolation.failed()
            if len(half) == 1:
                answer.errors[half[0]] = _fails_alone(failure)
                answer.alone.add(half[0])
                alone.append(half[0])
            elif self.isolation.split():
                part, found = await self._isolate(half, failure, alone)
                answer.merge(part)
                answered = answered or found
            else:
                answer.errors.update(dict.fromkeys(half, _unsplit(len(half), failure)))
        return answer, answered

    async def changes(self, since: datetime) -> AsyncIterator[Page]:
        """Pages of records modified at or after `since`, oldest first.

        Each page is a query of its own, after the last record of the page before it
        (keyset), never the server's nextLink: a nextLink that goes on by offset (`$skip`)
        skips a record whenever one read before it changes meanwhile and moves to the end
        (docs/mls-paging.md). A nextLink, or a page of `$top` records or more (a server may
        read `$top` as the total, or ignore it and stop at a size of its own), says there may
        be more; a page with neither is the last."""
        e = self.endpoint
        url = changes_url(e.base_url, e.resource, since, e.page_size, e.select)
        parse = partial(parse_changes_page, page_size=e.page_size)
        after: Position | None = None
        first_read: Position | None = None
        order_checked, records = False, 0
        # Keys gone on after at `after`'s timestamp, and nextLinks followed: a read never
        # goes back to where it was (docs/mls-paging.md).
        passed: set[str] = set()
        followed: set[str] = set()
        # Where the keyset could not go on, the read follows the server's nextLinks to its
        # end, as it did before it went on by keyset.
        by_link = False
        for query in range(MAX_PAGES):
            page = await self.get_page(url, parse)
            more = _more_to_come(page, e.page_size)
            records += page.size
            first_read = first_read or page.first_position
            # Order matters only in an answer of more than one page: a single one is read
            # whole, in whatever order (and one bad timestamp fails its record alone).
            if query > 0 or more:
                if not order_checked and records >= 2:
                    # Before this page is applied: as a rule the first one (pages of one
                    # record: the second, and a disorder found then puts the cursor back).
                    await self._check_order(since, first_read)
                    order_checked = True
                if _out_of_order(page, after):
                    raise OutOfOrder(NOT_IN_ORDER)
            yield page
            if not more:
                return
            last = page.last_position
            if by_link:
                after = last or after  # for the order check of the next page
                if (link := self._next_url(page.next_link, followed)) is None:
                    return  # the server's answer ends here; the next cycle reads on from the cursor
            elif last is not None and _moves_on(last, after, passed):
                passed = passed if after is not None and last[0] == after[0] else set()
                passed.add(last[1])
                after = last
                url = changes_after_url(
                    e.base_url, e.resource, after, e.page_size, e.select, page.last_moment
                )
                continue
            elif (link := self._next_url(page.next_link, followed)) is None:
                raise CursorStuck(
                    f"a page of {page.size} records may not be the last (page size "
                    f"{e.page_size}), but its records give no later (ModificationTimestamp, "
                    "ListingKey) to go on from; changes after it cannot be read"
                )
            # The keyset cannot go on (an empty page, or one that ends where a page before
            # did: a server whose times are finer than ours sends the records of after's
            # moment again): the server's own way on.
            url, by_link = link, True
        raise CursorStuck(f"more than {MAX_PAGES} pages of changes; giving up")

    async def _check_order(self, since: datetime, first_read: Position | None) -> None:
        """Whether the server keeps the order a read of changes asks for, asked once the
        answer spans more than a page (the only case where it matters) and two records at
        least were read: the oldest and the newest of the same changes, one record each (a
        server that ignores `$top` too sends more: its first record counts), judged with
        the first record read (`first_read`) by `ignores_order`."""
        e = self.endpoint
        urls = [
            changes_url(e.base_url, e.resource, since, 1, e.select, newest_first=newest)
            for newest in (False, True)
        ]
        try:
            oldest, newest = [(await self.get_page(url, parse_page)).first_position for url in urls]
        except ConnectionStopped:
            raise
        except MlsError as exc:
            raise MlsError(
                "could not check that the server keeps the order asked for (the first and the "
                f"last change, $orderby ModificationTimestamp asc and desc, $top=1): {exc}"
            ) from None
        if ignores_order(oldest, newest, first_read):
            raise OutOfOrder(NOT_IN_ORDER)

    async def entity_events(self, after: int) -> AsyncIterator[EventPage]:
        """Pages of the change log's events after sequence `after`, in sequence order. As in
        `changes`, each page is a query of its own, after the last sequence read, never the
        server's nextLink: a producer compacting its log while it is read shifts any offset,
        and an offset past a dropped event skips one that was not dropped."""
        e = self.endpoint
        last = after
        url = entity_events_url(e.base_url, last, e.page_size)
        followed: set[str] = set()  # nextLinks: one seen again is a loop
        for _ in range(MAX_PAGES):
            page = await self.get_page(url, parse_event_page)
            if page.first_sequence is not None and page.first_sequence <= last:
                raise MlsError(
                    f"the change log went back from sequence {last} to "
                    f"{page.first_sequence}: its pages are not in sequence order"
                )
            yield page
            if page.next_link is None and page.size < e.page_size:
                return
            if page.last_sequence is not None:
                last = page.last_sequence
                url = entity_events_url(e.base_url, last, e.page_size)
            elif (link := self._next_url(page.next_link, followed)) is not None:
                url = link  # no event to go on after (an empty page): the server's own way on
            else:
                raise CursorStuck(
                    f"a page of {page.size} events may not be the last (page size "
                    f"{e.page_size}), but no sequence in it reads; the change log after it "
                    "cannot be read"
                )
        raise CursorStuck(f"more than {MAX_PAGES} pages of the change log; giving up")

    async def has_events_after(self, after: int) -> bool:
        """Whether the change log has an event after sequence `after`: one request for one
        event, the whole cost of a poll that finds nothing."""
        url = entity_events_url(self.endpoint.base_url, after, 1)
        page = await self.get_page(url, parse_event_page)
        return page.size > 0

    async def resources(self) -> frozenset[str]:
        """The resources the server's `$metadata` declares (CSDL, asked for as XML: what
        RESO servers serve)."""
        url = metadata_url(self.endpoint.base_url)
        metadata = await self.get_page(url, parse_metadata, accept="application/xml")
        return metadata.resources

    async def last_sequence(self) -> int:
        """The change log's last sequence now (0 for an empty log)."""
        page = await self.get_page(last_event_url(self.endpoint.base_url), parse_event_page)
        return page.last_sequence or 0

    async def pages(
        self, first: httpx.URL, parse: Callable[[bytes], P], retry_server_errors: bool = True
    ) -> AsyncIterator[P]:
        """Follows @odata.nextLink as an opaque URL, but only on the configured server."""
        url: httpx.URL | None = first
        seen = {str(first)}  # and each page's nextLink, as `_next_url` follows it
        while url is not None:
            if len(seen) > MAX_PAGES:
                raise MlsError(f"more than {MAX_PAGES} pages for one query; giving up")
            page = await self.get_page(url, parse, retry_server_errors=retry_server_errors)
            yield page
            url = self._next_url(page.next_link, seen)

    def _next_url(self, link: str | None, seen: set[str]) -> httpx.URL | None:
        """The page `link` names, on the connection's server and not in `seen` (the pages
        already read, to which it is added), or None without a link."""
        if link is None:
            return None
        url = httpx.URL(self.endpoint.base_url).join(link)
        if _origin(url) != self._origin:
            raise MlsError(
                f"refused @odata.nextLink to {_origin(url)}: credentials are only sent to "
                f"the connection's server {self._origin}"
            )
        if str(url) in seen:
            raise MlsError("@odata.nextLink points back to a page already read (a loop)")
        seen.add(str(url))
        return url

    # -- one request, retried ----------------------------------------------------------------

    async def get_page(
        self,
        url: httpx.URL,
        parse: Callable[[bytes], P],
        accept: str = "application/json",
        retry_server_errors: bool = True,
    ) -> P:
        """One page, tried again on a `Retryable` failure (a `ServerError` only with
        `retry_server_errors`), up to the policy's attempts. The first attempt is made
        without tenacity: nearly every page is answered at once, and a retrying object made
        for each page was a measurable share of a cycle's CPU (docs/benchmarks.md "The HTTP
        engine"); the attempts after a failure are tenacity's."""
        if self.stopped is not None:
            raise self.stopped
        try:
            try:
                return await self._get_authorized(url, parse, accept)
            except Retryable as exc:
                if not _worth_again(exc, retry_server_errors) or self.policy.max_attempts < 2:
                    raise
                wait = self._backoff(exc, 1)
            # The attempts after the first, outside its `except`: an error of theirs does not
            # carry the first one as its context, nor is the first kept alive meanwhile.
            await anyio.sleep(wait)
            return await self._again(url, parse, accept, retry_server_errors)
        except TokenUnavailable as exc:
            self.stopped = TokenEndpointDown(f"cannot get an access token: {exc}")
            raise self.stopped from None
        except ConnectionStopped as exc:
            self.stopped = exc
            raise

    async def _again(
        self, url: httpx.URL, parse: Callable[[bytes], P], accept: str, retry_server_errors: bool
    ) -> P:
        """The page's attempts after its first failed: tenacity's attempt 1 is the second."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.max_attempts - 1),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: _worth_again(exc, retry_server_errors)),
            reraise=True,
            sleep=anyio.sleep,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get_authorized(url, parse, accept)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        """The wait after tenacity's attempt N, which is the page's attempt N + 1."""
        exc = state.outcome.exception() if state.outcome else None
        return self._backoff(exc, state.attempt_number + 1)

    def _backoff(self, failed: BaseException | None, attempt: int) -> float:
        """The wait after the page's `attempt` failed with `failed`."""
        asked = failed.retry_after if isinstance(failed, Retryable) else None
        jitter = random.uniform(0, self.policy.backoff_initial)  # noqa: S311 - not a secret
        return retry_wait(self.policy, attempt, asked, jitter)

    async def _get_authorized(self, url: httpx.URL, parse: Callable[[bytes], P], accept: str) -> P:
        """One 401 gets a fresh token and one more try; a second 401 stops the connection."""
        resp = await self._send(url, accept)
        if resp.status_code == 401:
            self.tokens.invalidate()
            resp = await self._send(url, accept)
            if resp.status_code == 401:
                raise NeedsReauth(
                    f"{self.endpoint.base_url} answered 401 twice: the credentials are no "
                    "longer accepted. Update the connection's credentials, then resume it."
                )
        return self._read(resp, parse)

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[Extensions]:
        """What every request to the server waits for, token requests too (a vendor counts
        them against the same limit). The credential's turn first, then a slot of the global
        bound: a slot is held only while a request is really out, never while it waits for
        its credential's turn (with 16 slots and 2 requests/s per credential, slots held
        waiting made a 100,000-listing cycle take 32 s instead of 9). Gives the request's
        httpx extensions, which space the moment it goes out."""
        async with self.pace, self.concurrency:
            yield self._extensions

    async def _send(self, url: httpx.URL, accept: str) -> httpx.Response:
        if self.stopped is not None:
            raise self.stopped
        token = await self.tokens.token(self.http, self._slot)  # a fetch takes its own slot
        async with self._slot() as extensions:
            if self.stopped is not None:  # the breaker opened while this one waited
                raise self.stopped
            self.on_request()
            try:
                resp = await self.http.get_now(
                    url,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Accept": accept,
                        "Prefer": self._prefer,
                    },
                    extensions=extensions,
                )
            except httpx.TransportError as exc:
                raise self._unanswered(transport_cause(exc)) from None
            self.unanswered = 0
            return resp

    def _unanswered(self, cause: str) -> MlsError:
        """A retryable failure, until a whole batch's worth of attempts in a row got no
        answer: then the connection stops for this cycle with one error that says why, so an
        unreachable host costs one batch's retries, not every batch's."""
        self.unanswered += 1
        where = self.endpoint.base_url
        if self.unanswered < self.policy.max_attempts:
            return Retryable(f"cannot reach {where}: {cause}")
        self.stopped = ServerUnreachable(
            f"cannot reach {where}: {cause} ({self.unanswered} attempts in a row); its "
            "remaining requests are skipped until the next cycle"
        )
        return self.stopped

    def _read(self, resp: httpx.Response, parse: Callable[[bytes], P]) -> P:
        status = resp.status_code
        if status == 429:
            self._throttled(resp)
        self.consecutive_429s = 0
        if status == 200:
            try:
                page = parse(resp.content)
            except BadPayload as exc:
                # A truncated or garbled body is usually transient: worth the retries.
                raise ServerError(str(exc)) from None
            self.isolation.answered()
            return page
        if status in (413, 414):
            raise RequestTooLong(f"HTTP {status}: the query is too long for this server")
        if status == 503:
            raise Retryable("HTTP 503", self._retry_after(resp))
        if status >= 500:
            raise ServerError(f"HTTP {status} from the MLS server")
        raise QueryFailed(f"the MLS server answered {answer_summary(resp)}")

    def _throttled(self, resp: httpx.Response) -> NoReturn:
        self.consecutive_429s += 1
        delay = self._retry_after(resp)
        if self.consecutive_429s >= self.policy.breaker_after_429s:
            raise CircuitOpen(
                f"{self.consecutive_429s} answers in a row were 429 Too Many Requests; "
                "leaving this server alone until the next cycle"
            )
        raise Retryable("HTTP 429 Too Many Requests", delay)

    def _retry_after(self, resp: httpx.Response) -> float | None:
        delay = parse_retry_after(resp.headers.get("Retry-After"))
        if delay is not None and delay > self.policy.max_retry_after:
            raise CircuitOpen(
                f"the server asked us to wait {delay:.0f} s (Retry-After), longer than "
                f"[mls] max_retry_after_seconds = {self.policy.max_retry_after:.0f}; "
                "trying again next cycle"
            )
        return delay


@cache
def _origin_of(base_url: str) -> str:
    """A connection's server, kept: a client is made per connection per run, and parsing
    its URL again each time was a measurable share of a by_key cycle (docs/benchmarks.md).
    One entry per base URL the process has synced, however many: a bound below the number
    of connections kept none, since each cycle goes through all of them in turn."""
    return _origin(url_of(base_url))


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


NOT_IN_ORDER = (
    "the server does not return changes in the order asked for ($orderby "
    "ModificationTimestamp,ListingKey): an answer cut short could hide older changes, so "
    "changes cannot be read from it; use mode by_key or events for this connection"
)


Position = tuple[datetime, str]  # (ModificationTimestamp, ListingKey) of a record


def ignores_order(
    oldest: Position | None, newest: Position | None, first_read: Position | None = None
) -> bool:
    """From the first record of the answers to "the oldest change" and "the newest change"
    (two changes at least), and the first record of the read's first page: whether the
    server ignored the order asked for. The same record both ways, or a later one as the
    oldest; or an oldest change older than the first one read, which the first page should
    have begun with (a record changed since that page only moves later). Keys are not
    compared otherwise (a server collates them its own way), and a record changed between
    the two requests is no longer the same record (its timestamp moved on)."""
    if oldest is None or newest is None:
        return False  # no timestamp to judge by
    skipped = first_read is not None and oldest[0] < first_read[0]
    return oldest == newest or oldest[0] > newest[0] or skipped


def _more_to_come(page: Page, page_size: int) -> bool:
    """Whether the answer goes on after this page: a nextLink, or a full page."""
    return page.next_link is not None or page.size >= page_size


def _moves_on(last: Position, after: Position | None, passed: Collection[str]) -> bool:
    """Whether a page whose last record is at `last` lets a keyset read go on after the one
    before it (`after`): a later timestamp, or at the same one a key the read has not gone on
    after yet (`passed`). Keys are not compared: the server orders them its own way, as
    numbers or without regard to case."""
    if after is None or last[0] > after[0]:
        return True
    return last[0] == after[0] and last[1] not in passed


def _out_of_order(page: Page, before: Position | None) -> bool:
    """Whether `page` breaks oldest-first order, within itself or after the page `before`
    it (the last position it held)."""
    if page.out_of_order:
        return True
    first = page.first_position
    return before is not None and first is not None and first[0] < before[0]


def _unsplit(keys: int, failure: QueryFailed) -> str:
    return (
        f"not checked: the server failed a query of {keys} keys ({failure}), and this sync "
        "asks no more to find the key that makes it fail (daemon/mls/isolation.py)"
    )


def _fails_alone(failure: QueryFailed) -> str:
    return f"the server fails a query of this key alone: {failure}"


NOT_IN_THE_ANSWER = "not in the MLS answer (removed from the feed)"
TOO_LONG_ALONE = "the server refuses a query of this key alone as too long"


def _answer_for(keys: Sequence[str], pages: list[Page]) -> tuple[BatchAnswer, list[str]]:
    """The answer for `keys` from the pages of their query. A key in none of them, with
    nothing unreadable or unasked in the answer that could have been its, is removed when
    the answer is one page, or the query asked for that key alone; otherwise it is given
    back to be asked again (an offset may have skipped its record)."""
    wanted = set(keys)
    absent: list[str] = []
    answer = BatchAnswer()
    unattributed: list[str] = []
    unasked: list[str] = []
    for page in pages:
        for rec in page.records:
            if rec.listing_key in wanted:
                answer.records[rec.listing_key] = rec
            else:
                unasked.append(rec.listing_key)
        for key in page.hidden:
            if key in wanted:
                answer.removed[key] = "MlgCanView is false (removed from the feed)"
                answer.records.pop(key, None)
            else:
                unasked.append(key)
        for err in page.errors:
            if err.listing_key is None:
                unattributed.append(err.message)
            elif err.listing_key in wanted:
                answer.errors[err.listing_key] = err.message
                answer.records.pop(err.listing_key, None)
            else:
                unasked.append(err.listing_key)
    for key in keys:
        if key in answer.records or key in answer.removed or key in answer.errors:
            continue
        # A record we could not read, or one under a key we did not ask for (a server that
        # matches keys without regard to case, say), may have been this one's: not removed.
        if unattributed:
            answer.errors[key] = (
                f"not confirmed: the answer held an unreadable record ({unattributed[0]})"
            )
        elif unasked:
            answer.errors[key] = (
                f"not confirmed: the answer held ListingKey {unasked[0]!r}, which was not asked "
                f"for, and none for {key!r}; the tracked key must be the server's exactly"
            )
        elif len(pages) == 1 or len(keys) == 1:
            answer.removed[key] = NOT_IN_THE_ANSWER
        else:
            absent.append(key)
    return answer, absent
