"""What a caller may ask of a collection: its filters and a page (`after`, `limit`).

Written once and validated once: the API takes each as its query parameters, the CLI builds
them from its options, and the remote client sends them back as query parameters.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from daemon.enums import AccountState, ConnectionState, PostStatus, RunOutcome
from daemon.models import LocalStatus
from daemon.platforms.registry import Platform

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_STATUS = f"^({'|'.join([*LocalStatus, 'unknown'])})$"
_ID = Field(default=None, max_length=128)
_USER = Field(default=None, max_length=128, description="only this user's (its id)")


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    after: str | None = Field(
        default=None, max_length=200, description="`next_after` of the page before"
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)

    def filters(self) -> dict[str, Any]:
        """The filters alone, as the store's page functions take them."""
        return self.model_dump(exclude={"after", "limit"})

    def params(self) -> dict[str, Any]:
        """As query parameters: what is set, by the names the API reads."""
        return self.model_dump(mode="json", exclude_none=True)


class ConnectionQuery(PageQuery):
    state: ConnectionState | None = None
    user: str | None = _USER


class ListingQuery(PageQuery):
    connection_id: str | None = _ID
    status: str | None = Field(
        default=None, pattern=_STATUS, description="`unknown`: no MLS answer yet"
    )
    excluded: bool | None = None
    q: str | None = Field(
        default=None, min_length=1, max_length=255, description="a part of the ListingKey"
    )
    user: str | None = _USER

    def filters(self) -> dict[str, Any]:
        out = super().filters()
        out["key_contains"] = out.pop("q")
        if out["excluded"] is not None:  # the column's 0 or 1: PostgreSQL has no bool = bigint
            out["excluded"] = int(out["excluded"])
        return out


class AccountQuery(PageQuery):
    platform: Platform | None = None
    state: AccountState | None = None
    # `user_id`: its name before users had a filter of their own on every list; kept so that
    # clients written then go on working.
    user: str | None = Field(
        default=None,
        max_length=128,
        description="only this user's (its id); `user_id` is the older name",
        validation_alias=AliasChoices("user", "user_id"),
    )


class PostQuery(PageQuery):
    listing_id: str | None = _ID
    platform: Platform | None = None
    status: PostStatus | None = None
    user: str | None = Field(
        default=None, max_length=128, description="only posts of this user's listings"
    )


class RunQuery(PageQuery):
    outcome: RunOutcome | None = None
    trigger: str | None = Field(default=None, max_length=20)


class RunErrorQuery(PageQuery):
    severity: str | None = Field(default=None, pattern="^(error|warning)$")
    connection_id: str | None = _ID


class EventQuery(BaseModel):
    """A read of the event log: the events after `after`, oldest first (docs/events.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: int = Field(
        default=0, ge=0, le=2**63 - 1, description="the `next_after` of the read before; 0: all"
    )
    types: str | None = Field(
        default=None,
        max_length=2000,
        description="comma-separated event types or families (`listing.*`); all when absent",
    )
    user: str | None = Field(default=None, max_length=128, description="one user's events")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    wait: float = Field(
        default=0,
        ge=0,
        le=60,
        description="seconds to wait for an event when there is none yet (long polling)",
    )

    def params(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)
