"""What a delete attempt can come to (docs/platforms.md, "The five outcomes").

Adapters never raise for a platform's answer: they classify it into one of these, and the
reconciler decides what each means for the post and the account (and, for a retry, when:
`retry_delay`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Deleted:
    """The platform confirmed the delete."""

    note: str = "deleted"


@dataclass(frozen=True)
class AlreadyGone:
    """The post is not there any more (LinkedIn 404, Facebook 100/33 confirmed by a check)."""

    note: str


@dataclass(frozen=True)
class RetryLater:
    """Network error, timeout, 5xx, throttling: the post stays published and is tried again."""

    reason: str
    retry_after: float | None = None
    # The platform answered that it did not act (throttled): a DELETE refused so is known
    # not to have gone through, and needs no read before it is sent again.
    refused: bool = False


@dataclass(frozen=True)
class AuthFailed:
    """The account's token is no longer accepted: nothing more for it until a person logs in."""

    reason: str


@dataclass(frozen=True)
class NeedsPerson:
    """The API cannot (or may not) delete it: a person must, by hand."""

    reason: str


Outcome = Deleted | AlreadyGone | RetryLater | AuthFailed | NeedsPerson

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


@dataclass(frozen=True)
class PostTarget:
    post_id: str
    platform_post_id: str


@dataclass
class AccountCredentials:
    """Decrypted, in memory only, for the length of one reconcile."""

    id: str
    platform: str
    connected_via: str | None
    access_token: str
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    def __repr__(self) -> str:
        return f"AccountCredentials(id={self.id!r}, platform={self.platform!r}, tokens=<redacted>)"


# Awaited by an adapter before each call it makes after the first for one post: the
# reconciler's rate limit (the first call's token the reconciler takes itself).
Pace = Callable[[], Awaitable[None]]


async def no_pace() -> None:
    return None


class PlatformAdapter(Protocol):
    """One platform's delete, and the read that tells whether an earlier delete went through.
    Never raises for the platform's answer: it classifies it."""

    platform: str

    async def delete(self, post: PostTarget, account: AccountCredentials) -> Outcome: ...

    async def check(self, post: PostTarget, account: AccountCredentials) -> Outcome | None:
        """A read before a second DELETE: None when the post is still there."""
        ...
