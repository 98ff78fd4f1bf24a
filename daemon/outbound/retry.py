"""What an attempt's answer means for its delivery: pure, with the clock and the dice given.

2xx is delivered. 410 Gone disables the endpoint. Anything else (no answer, a redirect, any
other status) is tried again after a growing, jittered delay, or after the Retry-After of a
429 or 503; an endpoint failing for the whole retry window (3 days) is disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from daemon.enums import DeliveryState

# Seconds before the next try after the 1st, 2nd, ... failure (the spec's example schedule);
# the last repeats until the window ends.
SCHEDULE = (5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400)
JITTER = 0.2  # each delay is drawn from +-20% of its step
SLOW_DOWN = frozenset({429, 503})
LONGEST_RETRY_AFTER_SECONDS = 366 * 86_400


@dataclass(frozen=True)
class RetryPolicy:
    window: timedelta = timedelta(days=3)
    max_retry_after: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Decision:
    state: DeliveryState
    next_attempt_at: datetime | None = None
    disable_reason: str | None = None


def decide(
    status: int | None,
    retry_after: str | None,
    failures_before: int,
    failing_since: datetime | None,
    now: datetime,
    policy: RetryPolicy,
    rand: float,
) -> Decision:
    """`failures_before`: the delivery's failed attempts before this one; `failing_since`: the
    endpoint's first failure since its last success (None: this is it); `rand` in [0, 1)."""
    if status is not None and 200 <= status < 300:
        return Decision(DeliveryState.DELIVERED)
    if status == 410:
        return Decision(
            DeliveryState.FAILED, disable_reason="the receiver answered 410 Gone: it wants no more"
        )
    since = failing_since or now
    give_up_at = since + policy.window
    if now >= give_up_at:
        days = policy.window.total_seconds() / 86_400
        return Decision(
            DeliveryState.FAILED,
            disable_reason=f"every delivery failed for {days:g} days (since {since.isoformat()})",
        )
    delay = backoff(failures_before + 1, rand)
    asked = parse_retry_after(retry_after, now) if status in SLOW_DOWN else None
    if asked is not None:
        delay = min(asked, policy.max_retry_after)
    return Decision(DeliveryState.PENDING, next_attempt_at=min(now + delay, give_up_at))


def backoff(failures: int, rand: float) -> timedelta:
    """The jittered delay after the `failures`-th failure (1: the first)."""
    step = SCHEDULE[min(max(failures, 1), len(SCHEDULE)) - 1]
    return timedelta(seconds=step * (1 - JITTER + 2 * JITTER * rand))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After in seconds or as an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # isdigit alone takes "²", which int() refuses
        # A receiver's number may be any size; past a year it is capped anyway.
        return timedelta(seconds=min(int(text), LONGEST_RETRY_AFTER_SECONDS))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))
