"""Standard Webhooks signing, with the `standardwebhooks` library: a receiver that verifies
with it (or any implementation of the spec) accepts what we send."""

from __future__ import annotations

import base64
import functools
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from math import floor

from standardwebhooks import Webhook

PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec: 24 to 64 random bytes


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


@functools.lru_cache(maxsize=64)
def _webhook(secret: str) -> Webhook:
    """One per secret, not per delivery (it decodes the secret once)."""
    return Webhook(secret)


def message_id(event_id: int) -> str:
    """`webhook-id`: the event's, the same on every retry (a receiver's idempotency key)."""
    return f"evt_{event_id}"


def headers(msg_id: str, at: datetime, body: str, signing_secrets: Sequence[str]) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` sent at `at`: one `v1,` signature per
    secret (two while a rotated secret's overlap lasts)."""
    timestamp = floor(at.timestamp())
    when = datetime.fromtimestamp(timestamp, UTC)
    signature = " ".join(_webhook(s).sign(msg_id, when, body) for s in signing_secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
