"""The shapes the /v1 API answers with, for /openapi.json and for the answers themselves.

The views of daemon/ops/views.py (and the small answers the operations build) are the single
source of truth: each model here lists exactly their keys, in their order, and forbids any
other, so a view that gains or loses a key fails the route's own answer and the test that
holds the models to views of real records (tests/integration/test_api_schemas.py). A route
names its model as its `response_model`.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from daemon.enums import (
    AccountState,
    AuthKind,
    ConnectionState,
    EventType,
    KeyFilter,
    NotifyMode,
    PostStatus,
    QueryMode,
)
from daemon.models import AuditEvent, LocalStatus
from daemon.platforms.registry import Platform
from daemon.scopes import Scope

SET = Literal["<set>"]  # a stored secret, shown as set, never as itself
ItemT = TypeVar("ItemT", bound=BaseModel)


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Connection(Shape):
    id: str
    name: str
    base_url: str
    resource: str
    auth_kind: AuthKind
    token_url: str | None
    client_id: str | None
    scope: str | None
    mode: QueryMode
    key_filter: KeyFilter
    batch_size: int
    page_size: int
    rate_per_second: float
    overlap_seconds: int
    full_reconcile_seconds: int
    select_mlg_can_view: bool
    state: ConnectionState
    last_error: str | None
    cursor: str | None
    last_full_reconcile_at: str | None
    last_synced_at: str | None
    created_at: str
    updated_at: str
    user_id: str
    poll_seconds: int = Field(description="events mode: seconds between reads of the change log")
    secret: SET
    push: bool = Field(description="whether the MLS may push events (it has a push token)")


class CheckTier(Shape):
    listings: int
    every_seconds: int = Field(description="how often its listings are asked; 0: every cycle")
    next_due: str | None = Field(description="when its first listing is next due")


class ConnectionDetail(Connection):
    check_tiers: dict[str, CheckTier] | None = Field(
        description="by_key connections: its listings in each check tier (unchecked, recent, "
        "pending, active, closed), how often each is asked by the scheduled cycle, and when "
        'each is next due (docs/mls-reso.md "Check tiers"); null in other modes or with '
        "[check_intervals] off"
    )


class ConnectionWithPushToken(Connection):
    push_token: str = Field(
        description="mlspush_...: the bearer token of the MLS's pushes; shown in this answer "
        "only, never again"
    )


class Listing(Shape):
    id: str
    connection_id: str
    listing_key: str
    status: LocalStatus | None = Field(description="null until the MLS has answered for it")
    mls_standard_status: str | None
    mls_status: str | None
    mls_modified_at: str | None
    status_changed_at: str | None
    last_checked_at: str | None
    last_error: str | None
    excluded: bool
    created_at: str
    updated_at: str
    user_id: str
    publishable: bool


class StatusChange(Shape):
    id: int
    listing_id: str
    connection_id: str
    from_status: LocalStatus | None
    to_status: LocalStatus
    mls_standard_status: str | None
    mls_status: str | None
    event: AuditEvent
    run_id: int | None
    changed_at: str


class ListingDetail(Listing):
    status_changes: list[StatusChange] = Field(
        description="the start of its audit trail, oldest first (all: /status-changes)"
    )


class Account(Shape):
    id: str
    user_id: str
    platform: Platform
    connected_via: str | None
    access_token_expires_at: str | None
    refresh_token_expires_at: str | None
    client_id: str | None
    state: AccountState
    last_error: str | None
    created_at: str
    updated_at: str
    access_token: SET
    refresh_token: SET | None
    client_secret: SET | None


class Post(Shape):
    id: str
    listing_id: str
    account_id: str
    platform_post_id: str
    status: PostStatus
    published_at: str | None
    unpublished_at: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str
    permalink: str | None
    note: str | None
    platform: Platform | None
    link: str | None = Field(description="where a person finds the post")


class Run(Shape):
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
    posts_already_gone: int
    posts_failed: int
    posts_manual: int


class RunError(Shape):
    id: int
    run_id: int
    scope: str
    severity: Literal["error", "warning"]
    connection_id: str | None
    listing_id: str | None
    message: str
    at: str


class RunDetail(Run):
    changes: dict[str, int] = Field(description="status changes by kind")
    problems: list[RunError] = Field(description="its first errors and warnings (all: /errors)")
    problems_total: int


class PostAttempt(Shape):
    post_id: str
    platform: Platform
    outcome: str = Field(description="what became of it, or Waiting (detail says why)")
    detail: str


class RunReport(Run):
    """A run made by the request itself."""

    changes: dict[str, int]
    posts_due: int = Field(description="posts still due: waiting for a retry or an account")
    problems: list[RunError]
    posts: list[PostAttempt]


class _ListingFirst(Shape):
    listing: ListingDetail


class ListingSynced(RunReport, _ListingFirst):
    """The listing as the sync left it, then the run (the view's order)."""


class SyncRequested(Shape):
    outcome: Literal["started", "queued"] = Field(
        description="queued: a cycle runs now, and this one follows it (coalesced)"
    )
    run_id: int = Field(description="the run that will report the cycle")


class Imported(Shape):
    rows: int
    added_or_repointed: int


class ConnectionRemoved(Shape):
    removed: str
    listings_removed: int
    live_posts_removed: int


class ListingRemoved(Shape):
    removed: str
    live_posts_removed: int


class AccountRemoved(Shape):
    removed: str


class PostForgotten(Shape):
    removed: str
    was: PostStatus


class Endpoint(Shape):
    id: int
    url: str
    event_types: list[str]
    user_id: str | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    secret: str = Field(description='"<set>": the secret is shown only when made')
    previous_secret_until: str | None = Field(
        description="while a rotated secret still signs: until when"
    )
    cursor: int = Field(description="the last event id taken or skipped")
    failing_since: str | None
    created_at: str
    updated_at: str


class ManualTotals(Shape):
    posts_to_remove_by_hand: int
    accounts_to_reauthenticate: int
    connections_to_reauthenticate: int
    webhook_endpoints_disabled: int


class Event(Shape):
    id: int = Field(description="only grows; send the last one you handled as `after`")
    type: EventType
    timestamp: str = Field(description="when its change was written; ids give the order")
    user_id: str | None = Field(description="whose record it is about; null: the daemon's")
    data: dict[str, Any] = Field(description="what changed, with links; docs/events.md")


class EventFeed(Shape):
    items: list[Event]
    next_after: int = Field(description="pass as `after` in the next read")


class ManualActions(Shape):
    posts_to_remove_by_hand: list[Post]
    accounts_to_reauthenticate: list[Account]
    connections_to_reauthenticate: list[Connection]
    webhook_endpoints_disabled: list[Endpoint] = Field(
        description="disabled after failing for days (or a 410): fix the receiver, enable it"
    )
    totals: ManualTotals = Field(description="how many in all: each list stops at 10,000")


class User(Shape):
    id: str
    display_name: str
    email: str | None
    time_zone: str = Field(description="an IANA name: when a daily digest goes out")
    notify_events: list[str] = Field(
        description="the event types e-mailed to the user: a type, a family (`listing.*`) or `*`"
    )
    notify_mode: NotifyMode
    created_at: str
    updated_at: str


class UserRemoved(Shape):
    removed: str


class UserSyncRequested(Shape):
    outcome: Literal["started", "queued"] = Field(
        description="queued: a sync of this user runs or waits, and this one shares or "
        "follows it (coalesced)"
    )
    run_id: int = Field(description="the run that will report the sync")


class Token(Shape):
    id: int
    name: str
    scope: Scope
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewToken(Token):
    token: str = Field(description="the token itself: shown this once, never again")


class Tokens(Shape):
    items: list[Token]


class Page(Shape, Generic[ItemT]):
    items: list[ItemT]
    total: int = Field(description="how many match, on every page")
    next_after: str | None = Field(description="pass as `after` for the next page")
    next: str | None = Field(description="the path and query of the next page; null on the last")


def created(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The 201 of a PUT that made its record (200: it replaced one)."""
    return {201: {"model": model, "description": "Created"}}
