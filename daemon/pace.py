"""How calls are paced under a rate: the platforms' limiters, and an MLS credential's pace.

An MLS credential's pace is held at two points of a request's way out (docs/runtime.md
"aiolimiter and anyio"):

- its turn, an aiolimiter bucket, taken before a slot of the global concurrency bound, so
  that waiting for a turn never holds a slot;
- the moment it goes out: its connection open, its headers about to be written. A server
  counts arrivals, and a request whose connection was slow to open (a TLS handshake, the
  first request of a cold process) leaves later than its turn, while the next ones, on open
  connections, leave on time: six arrived in one sliding second at a limit of five. So each
  request is spaced again, there, from the one that went out before it.

The engines reach the second point through httpx's `trace` request extension, which httpcore
awaits at each step of a request; `daemon/aiohttp_transport.py` calls it at the same step.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import anyio
from aiolimiter import AsyncLimiter

# An MLS credential's requests leave this much under its configured rate. Requests still move
# by some milliseconds around the moment they go out (a busy event loop wakes them late, the
# network and the server's own loop delay them): at exactly 5 requests/s, one that arrives
# 20 ms late shares a one-second window with the next five, and a server counting over a
# sliding second sees 6. 5% under absorbs 50 ms of such variation in every second; a vendor
# like MLS Grid suspends a token over its limit, which costs far more than the 5%
# (docs/reliability.md "Fault soak").
MLS_RATE_MARGIN = 0.05

# The trace events that mean "this request's headers are being written now": httpcore's names;
# daemon/aiohttp_transport.py sends the first.
HEADERS_GOING_OUT = "http11.send_request_headers.started"
GOING_OUT = frozenset({HEADERS_GOING_OUT, "http2.send_request_headers.started"})


def make_limiter(rate_per_second: float) -> AsyncLimiter:
    """At most `rate_per_second` calls in any one-second window, without the burst of a whole
    second that AsyncLimiter(rate, 1) would allow.

    The bucket holds 10 ms worth of calls (one below 200/s), and drains that much slower than
    the rate, so the window bound holds. Why any bucket at all: a busy event loop wakes a
    waiter a little late, and with room for one call only, each late wake-up is lost for
    good; at 300 deletes/s on a loaded loop that added 20% to the floor (benchmark scenario C).
    """
    return AsyncLimiter(*_bucket(rate_per_second))


def _bucket(rate_per_second: float) -> tuple[int, float]:
    """(calls the bucket holds, the period they drain in) for `make_limiter`."""
    burst = max(1, int(rate_per_second // 100))
    return burst, burst / (rate_per_second - (burst - 1))


class CredentialPace:
    """The pace of one MLS credential, shared by every connection that uses it. `async with`
    takes a turn; `trace` is a request's httpx `trace` extension, which spaces the moment it
    goes out."""

    def __init__(self, rate_per_second: float) -> None:
        self.turns = AsyncLimiter(1, 1.0)  # its rate is set by `retune`, just below
        self._gap = 1.0
        self._next_out = 0.0  # the earliest time (anyio's clock) the next request may go out
        self.retune(rate_per_second)

    def retune(self, rate_per_second: float) -> None:
        """A new rate, in place: every client already holding this pace (other connections
        of the credential, requests waiting their turn) goes at it from its next call, and
        no second pace ever runs beside it."""
        paced = rate_per_second * (1 - MLS_RATE_MARGIN)
        burst, period = _bucket(paced)
        self.turns.max_rate, self.turns.time_period = burst, period
        # aiolimiter derives its drip rate once, in __init__; it has no setter for a new rate.
        self.turns._rate_per_sec = burst / period
        self._gap = 1 / paced

    async def __aenter__(self) -> None:
        await self.turns.acquire()
        # Once a request went out late, the next turns come too soon for the spacing at the
        # way out: they wait here, before a slot of the global bound, not there, holding one.
        # Only the lateness of this request's own way out is left to wait for there.
        lag = self._next_out - anyio.current_time()
        if lag > 0:
            await anyio.sleep(lag)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """Called by the engine at every step of the request (httpcore's trace events);
        waits at the one where its headers are about to be written."""
        if event in GOING_OUT:
            await self._going_out()

    async def _going_out(self) -> None:
        # A time is reserved before the wait, so requests going out together are spaced in
        # the order they came, and a waiter woken late does not delay the ones after it (it
        # leaves less than a gap before the next: the margin covers that lateness too).
        now = anyio.current_time()
        at = max(now, self._next_out)
        self._next_out = at + self._gap
        if at > now:
            await anyio.sleep(at - now)
