"""The closed sets of values a stored record's fields take, shared by the store, the sync,
the operations layer, the API and the CLI. Each is a `StrEnum`: its members compare equal to
the text the database holds (the CHECK constraints of the migrations list the same values).
"""

from __future__ import annotations

from enum import StrEnum


class ConnectionState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # by a person: no sync until resumed
    NEEDS_REAUTH = "needs_reauth"  # the MLS refused its credential: new credentials resume it


class AccountState(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"  # the platform refused its token: new tokens resume it
    DISABLED = "disabled"


class PostStatus(StrEnum):
    PUBLISHED = "published"
    UNPUBLISHED = "unpublished"
    MANUAL_REQUIRED = "manual_required"  # only a person can take it down


class RunOutcome(StrEnum):
    RUNNING = "running"  # (or reserved for a cycle asked for, not begun yet)
    OK = "ok"
    PARTIAL = "partial"  # errors recorded
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class NotifyMode(StrEnum):
    """How a user is e-mailed the events they chose."""

    IMMEDIATE = "immediate"  # a message per event, as it comes
    DAILY_DIGEST = "daily_digest"  # one message a day, in the user's time zone


class QueryMode(StrEnum):
    BY_KEY = "by_key"  # ask for every tracked key each cycle
    INCREMENTAL = "incremental"  # ask for what changed since the cursor
    EVENTS = "events"  # read RESO's change log (EntityEvent), then the listings it names


class AuthKind(StrEnum):
    BEARER = "bearer"  # a static bearer token
    OAUTH2 = "oauth2"  # OAuth2 client credentials


class KeyFilter(StrEnum):
    """How a server accepts a set of keys (docs/mls-reso.md): string operators are not part
    of Web API Core, so this is a per-server setting."""

    IN = "in"  # OData 4.01 `ListingKey in (...)`
    OR = "or"  # an `or`-chain of `eq`
    EACH = "each"  # one request per key


# A live post is still on its platform: its record is what takes it down (published) or tells a
# person to (manual_required). A live post's record is never forgotten or re-pointed silently.
LIVE_POST_STATUSES = frozenset({PostStatus.PUBLISHED, PostStatus.MANUAL_REQUIRED})
# The same set in SQL: `status IN LIVE_POSTS_SQL`.
LIVE_POSTS_SQL = "(" + ", ".join(sorted(f"'{s.value}'" for s in LIVE_POST_STATUSES)) + ")"


class EventType(StrEnum):
    """What the event log reports (docs/events.md). Each committed change is one event, of
    the most specific type that fits it: a sale is `listing.sold`, not also a status change."""

    LISTING_STATUS_CHANGED = "listing.status_changed"  # any change no type below names
    LISTING_SOLD = "listing.sold"
    LISTING_RESTORED = "listing.restored"  # pending -> active (5.4)
    LISTING_REMOVED = "listing.removed"  # gone from the MLS feed, or no longer tracked
    POST_UNPUBLISHED = "post.unpublished"
    POST_NEEDS_PERSON = "post.needs_person"
    POST_RETRY_SCHEDULED = "post.retry_scheduled"  # a post's first failed delete only
    CONNECTION_NEEDS_REAUTH = "connection.needs_reauth"
    ACCOUNT_NEEDS_REAUTH = "account.needs_reauth"
    RUN_FINISHED = "run.finished"
    # An endpoint that kept failing (or answered 410) was disabled; never sent to itself.
    WEBHOOK_ENDPOINT_DISABLED = "webhook.endpoint_disabled"


class DeliveryState(StrEnum):
    """A webhook delivery (one event to one endpoint)."""

    PENDING = "pending"  # not delivered yet: tried again at next_attempt_at
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # given up: the endpoint was disabled (410, or failing too long)
