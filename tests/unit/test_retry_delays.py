"""How long a failed call waits before its next try, through tables: a platform delete
(hours, per post) and an MLS request (seconds, within one batch)."""

from __future__ import annotations

import math

import pytest

from daemon.mls.client import RetryPolicy, retry_wait
from daemon.platforms.outcomes import retry_delay

DAY = 86_400.0


@pytest.mark.parametrize(
    ("attempts", "initial", "maximum", "asked", "seconds"),
    [
        (1, 60.0, 3600.0, None, 60.0),
        (2, 60.0, 3600.0, None, 120.0),
        (3, 60.0, 3600.0, None, 240.0),
        (6, 60.0, 3600.0, None, 1920.0),
        (7, 60.0, 3600.0, None, 3600.0),  # 3840 capped
        (0, 60.0, 3600.0, None, 60.0),  # never sooner than the first delay
        (10_000, 60.0, 3600.0, None, 3600.0),  # no overflow after many failures
        (1, 0.0, 0.0, None, 0.0),  # retries configured to be at once
        (1, 60.0, 3600.0, 600.0, 600.0),  # the platform asked for longer
        (5, 60.0, 3600.0, 30.0, 960.0),  # the backoff is already longer
        (1, 60.0, 3600.0, 7200.0, 7200.0),  # asked beyond the maximum: still honoured
        (1, 60.0, 3600.0, 1e12, DAY),  # but never more than a day
        (1, 60.0, 3600.0, math.inf, 60.0),  # a garbled figure counts for nothing
        (1, 60.0, 3600.0, math.nan, 60.0),
        (1, 60.0, 3600.0, -30.0, 60.0),
    ],
)
def test_a_failed_delete_waits_doubling_and_at_least_what_the_platform_asked(
    attempts: int, initial: float, maximum: float, asked: float | None, seconds: float
) -> None:
    assert retry_delay(attempts, initial, maximum, asked) == seconds


MLS = RetryPolicy(backoff_initial=0.5, backoff_max=30.0)


@pytest.mark.parametrize(
    ("attempts", "retry_after", "jitter", "seconds"),
    [
        (1, None, 0.0, 0.5),
        (2, None, 0.0, 1.0),
        (3, None, 0.25, 2.25),
        (6, None, 0.0, 16.0),
        (7, None, 0.0, 30.0),  # 32 capped
        (6, None, 0.49, 16.49),
        (7, None, 0.49, 30.0),  # the jitter stays under the cap too
        (10_000, None, 0.1, 30.0),
        (1, 12.0, 0.3, 12.0),  # Retry-After wins over the backoff
        (4, 0.0, 0.3, 0.0),  # Retry-After: 0 means at once
        (1, 120.0, 0.0, 120.0),  # above backoff_max, still honoured (max_retry_after is the bound)
    ],
)
def test_a_failed_mls_request_waits_what_the_server_asked_or_a_jittered_doubling(
    attempts: int, retry_after: float | None, jitter: float, seconds: float
) -> None:
    assert retry_wait(MLS, attempts, retry_after, jitter) == pytest.approx(seconds)
