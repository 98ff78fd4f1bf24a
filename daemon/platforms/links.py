"""Links a person can open to find a post (for the "remove by hand" list)."""

from __future__ import annotations

import math

from daemon.platforms.registry import REGISTRY


def post_link(platform: str, platform_post_id: str, permalink: str | None = None) -> str | None:
    if permalink:
        return permalink
    entry = REGISTRY.get(platform)
    return entry.link(platform_post_id) if entry else None


# The longest wait a platform's "come back in" is honoured for: a larger (or garbled) figure
# is no reason to leave a sold listing's post up longer, nor to overflow the date arithmetic.
MAX_PLATFORM_WAIT_SECONDS = 86_400.0


def retry_delay(attempts: int, initial: float, maximum: float, retry_after: float | None) -> float:
    """Seconds before a failed delete is tried again: doubling from `initial`, capped at
    `maximum`, and never sooner than the platform asked (up to a day)."""
    # 2**60 times any initial delay is past any maximum; a larger power overflows a float.
    backoff = min(initial * 2 ** min(max(attempts - 1, 0), 60), maximum)
    asked = retry_after if retry_after is not None and math.isfinite(retry_after) else 0.0
    return float(max(backoff, min(asked, MAX_PLATFORM_WAIT_SECONDS)))
