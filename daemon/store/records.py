"""Rows as typed values. The store returns these; nothing outside it sees a sqlite Row."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, NamedTuple, TypeGuard, TypeVar

from daemon.models import LocalStatus
from daemon.store.session import Row

RecordT = TypeVar("RecordT")


def from_row(cls: type[RecordT], row: Row) -> RecordT:
    names = _field_names(cls)  # type: ignore[arg-type]
    # sqlite3.Row is not a dict: `in` would test its values, hence keys().
    return cls(**{k: row[k] for k in row.keys() if k in names})  # noqa: SIM118


@functools.cache
def _field_names(cls: type[Any]) -> frozenset[str]:
    """Once per record type, not per row."""
    return frozenset(f.name for f in fields(cls))


@dataclass(frozen=True)
class ConnectionRow:
    id: str
    name: str
    base_url: str
    resource: str
    auth_kind: str
    token_url: str | None
    client_id: str | None
    scope: str | None
    secret_encrypted: str
    mode: str
    key_filter: str
    batch_size: int
    page_size: int
    rate_per_second: float
    overlap_seconds: int
    full_reconcile_seconds: int
    select_mlg_can_view: int
    state: str
    last_error: str | None
    cursor: str | None
    last_full_reconcile_at: str | None
    last_synced_at: str | None
    created_at: str
    updated_at: str
    user_id: str = "default"
    poll_seconds: int = 60
    push_token_sha256: str | None = None  # RESO push: the hash of its token; None: off
    # When its last complete sync began: which slot's work it did (daemon/sync/cycle_slots.py).
    last_sync_started_at: str | None = None

    def public(self) -> dict[str, Any]:
        """Everything but the secret and the push token's hash, for display."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.pop("secret_encrypted")
        out["secret"] = "<set>"  # noqa: S105 - a placeholder shown instead of it
        out["push"] = out.pop("push_token_sha256") is not None
        out.pop("last_sync_started_at")  # the scheduler's, not shown
        return out


@dataclass(frozen=True)
class ListingRow:
    id: str
    connection_id: str
    listing_key: str
    status: str | None
    mls_standard_status: str | None
    mls_status: str | None
    mls_modified_at: str | None
    status_changed_at: str | None
    last_checked_at: str | None
    last_error: str | None
    excluded: int
    created_at: str
    updated_at: str
    user_id: str = "default"


class CurrentListing(NamedTuple):
    """A listing as a sync's write finds it, in the transaction that writes: its status, and
    the record it tracks now (an answer about another record is not about it)."""

    status: LocalStatus | None
    connection_id: str
    listing_key: str
    # Nothing a check of it clears: no error, no need of a read of its own, no mark of
    # failing alone, no read again pending (daemon/store/listings.py MARK_CHECKED_SETTLED).
    settled: bool
    # The record's ModificationTimestamp as its last check stored it (`timestamps.iso`), or
    # None: a check that reads the same moment writes this text again (`listings.apply_plans`).
    modified_text: str | None
    # The record's statuses as its last check stored them: a check that finds the record as
    # it was writes only its time (daemon/store/listings.py MARK_CHECKED_UNCHANGED).
    mls_standard_status: str | None
    mls_status: str | None
    # Where the transaction that read it finds its row again (`listings.ROW`).
    row: int | str


def checks_quietly(
    found: CurrentListing | None, listing_id: str, named: Collection[str]
) -> TypeGuard[CurrentListing]:
    """Whether a check of the listing found so has nothing to clear: it is settled, and no
    event of the check's group named it (`named`: the event's read again is written with the
    check, by MARK_CHECKED)."""
    return found is not None and found.settled and listing_id not in named


current_listing_of: Callable[
    [tuple[LocalStatus | None, str, str, bool, str | None, str | None, str | None, int | str]],
    CurrentListing,
] = partial(tuple.__new__, CurrentListing)  # see `models.mls_record_of`


class TrackedListing(NamedTuple):
    """The little the sync needs per listing, loaded once per connection per cycle: its
    key, its status, and what its check tier is made of (daemon/sync/check_tiers.py). A
    named tuple: one is made per tracked listing per cycle (see `MlsRecord`)."""

    id: str
    listing_key: str
    status: LocalStatus | None
    status_changed_at: str | None = None
    last_checked_at: str | None = None
    failed: bool = False  # its last check found no usable answer


tracked_listing_of: Callable[
    [tuple[str, str, LocalStatus | None, str | None, str | None, bool]], TrackedListing
] = partial(tuple.__new__, TrackedListing)  # see `models.mls_record_of`


@dataclass(frozen=True)
class TierGroup:
    """Listings that share what a check tier is made of (daemon/sync/check_tiers.py), as
    the store counts them: their status, whether it changed recently, whether they are
    unchecked, how many, and the oldest last check among them."""

    status: LocalStatus | None
    recent: bool
    unchecked: bool
    listings: int
    oldest_check: str | None


@dataclass(frozen=True)
class RunRow:
    id: int
    trigger: str
    scope: str
    holder: str
    started_at: str
    finished_at: str | None
    outcome: str
    connections: int
    listings_checked: int
    status_changes: int
    posts_unpublished: int
    errors: int
    warnings: int
    mls_requests: int
    posts_already_gone: int = 0
    posts_failed: int = 0
    posts_manual: int = 0


@dataclass(frozen=True)
class RunErrorRow:
    id: int
    run_id: int
    scope: str
    severity: str
    connection_id: str | None
    listing_id: str | None
    message: str
    at: str


@dataclass(frozen=True)
class StatusChangeRow:
    id: int
    listing_id: str
    connection_id: str
    from_status: str | None
    to_status: str
    mls_standard_status: str | None
    mls_status: str | None
    event: str
    run_id: int | None
    changed_at: str


@dataclass(frozen=True)
class DuePost:
    id: str
    listing_id: str
    account_id: str
    platform_post_id: str
    listing_status: str | None
    attempts: int
    delete_sent_at: str | None = None  # a DELETE sent, its answer not recorded


@dataclass(frozen=True)
class AccountRow:
    id: str
    user_id: str
    platform: str
    connected_via: str | None
    access_token_encrypted: str
    access_token_expires_at: str | None
    refresh_token_encrypted: str | None
    refresh_token_expires_at: str | None
    client_id: str | None
    client_secret_encrypted: str | None
    state: str
    last_error: str | None
    created_at: str
    updated_at: str

    def public(self) -> dict[str, Any]:
        """Everything but the tokens, for display."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if "encrypted" not in f.name}
        out["access_token"] = "<set>"  # noqa: S105 - a placeholder shown instead of it
        out["refresh_token"] = "<set>" if self.refresh_token_encrypted else None
        out["client_secret"] = "<set>" if self.client_secret_encrypted else None
        return out


@dataclass(frozen=True)
class ApiTokenRow:
    """A named API token; its secret is not here (only its hash is stored, and never read)."""

    id: int
    name: str
    scope: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


@dataclass(frozen=True)
class PostRow:
    id: str
    listing_id: str
    account_id: str
    platform_post_id: str
    status: str
    published_at: str | None
    unpublished_at: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str
    permalink: str | None = None
    note: str | None = None
    platform: str | None = None  # joined from the account where asked for


@dataclass(frozen=True)
class UserRow:
    id: str
    display_name: str
    email: str | None
    time_zone: str
    notify_events: str  # a JSON list of event types
    notify_mode: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class EventRow:
    id: int
    type: str
    user_id: str | None
    connection_id: str | None
    listing_id: str | None
    post_id: str | None
    account_id: str | None
    run_id: int | None
    data: str  # JSON
    created_at: str


@dataclass(frozen=True)
class WebhookEndpointRow:
    id: int
    url: str
    event_types: str  # a JSON list
    user_id: str | None
    description: str | None
    enabled: int
    disabled_reason: str | None
    secret_encrypted: str
    previous_secret_encrypted: str | None
    previous_secret_until: str | None
    cursor: int
    failing_since: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class WebhookDeliveryRow:
    id: int
    endpoint_id: int
    event_id: int
    state: str
    attempts: int
    next_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class WebhookAttemptRow:
    id: int
    delivery_id: int
    at: str
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None
    replay: int
