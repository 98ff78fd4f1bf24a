"""What a person (the CLI, an import file, the HTTP API) may give to define records.

Validated here, once, so that every entry point refuses the same bad input with the same
message and nothing half-valid reaches the store (invariant 7).
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon import event_types
from daemon.enums import AuthKind, KeyFilter, NotifyMode, QueryMode
from daemon.models import LocalStatus
from daemon.platforms.registry import REGISTRY, Platform

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
SpecT = TypeVar("SpecT", bound=BaseModel)


class SpecError(ValueError):
    """Input that cannot be used; the message names each field, the value and the rule."""


def _url(value: str, what: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise ValueError(f"{what} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{what} must be an http(s) URL with a host, like https://mls.example/api")
    return value.rstrip("/")


EVENTS_RESOURCE = "Property"  # RESO's ResourceName of listings (docs/mls-reso.md)


class ConnectionFields(BaseModel):
    """A connection's definition; the id comes from where it is given (CLI, URL path)."""

    # Built at the first validation, not at import (defer_build), as every model read only
    # by some commands: a command pays only for the models it uses.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str = Field(min_length=1, max_length=200)
    base_url: str
    resource: str = Field(default="Property", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    auth_kind: AuthKind = AuthKind.BEARER
    token_url: str | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=500)
    scope: str | None = Field(default=None, max_length=500)
    mode: QueryMode = QueryMode.BY_KEY
    key_filter: KeyFilter = KeyFilter.IN
    batch_size: int = Field(default=50, ge=1, le=1000)
    page_size: int = Field(default=200, ge=1, le=10_000)
    rate_per_second: float = Field(default=2.0, gt=0, le=1000)
    overlap_seconds: int = Field(default=1200, ge=0, le=7 * 86_400)
    full_reconcile_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    # Events mode: how often the change log is read between cycles (an empty read is one
    # request).
    poll_seconds: int = Field(default=60, ge=1, le=86_400)
    select_mlg_can_view: bool = False
    # Whose connection it is. Left out: 'default' for a new one, and a replaced one keeps its
    # own (a new credential given without --user must not hand the connection to another).
    user_id: Identifier | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        url = _url(v, "base_url")
        if httpx.URL(url).userinfo:
            # It would be written in the store and in logs as part of the URL, and each MLS
            # request carries the connection's own credential (daemon/mls/engine_client.py).
            raise ValueError(
                "base_url must not hold a user name or password; give the credential as the "
                "connection's secret"
            )
        return url

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str | None) -> str | None:
        return None if v is None else _url(v, "token_url")

    @model_validator(mode="after")
    def _oauth_needs_endpoint(self) -> ConnectionFields:
        if self.auth_kind is AuthKind.OAUTH2 and not (self.token_url and self.client_id):
            raise ValueError("auth_kind 'oauth2' needs token_url and client_id")
        return self

    @model_validator(mode="after")
    def _events_name_property(self) -> ConnectionFields:
        # The change log names listings by RESO's ResourceName, Property: a connection whose
        # resource is called otherwise would find none of its listings' events in it.
        if self.mode is QueryMode.EVENTS and self.resource != EVENTS_RESOURCE:
            raise ValueError(
                f"mode 'events' reads the change log's {EVENTS_RESOURCE} events: resource "
                f"must be {EVENTS_RESOURCE} (or use mode by_key or incremental)"
            )
        return self


class ConnectionSpec(ConnectionFields):
    id: Identifier


class ListingFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    connection_id: Identifier
    listing_key: str = Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$")
    status: LocalStatus | None = None
    # Whose listing it is; left out: its connection's user (a brokerage's connection serves
    # several agents, each owning their listings).
    user_id: Identifier | None = None


class ListingSpec(ListingFields):
    id: Identifier


def parse_spec(
    model: type[SpecT], data: dict[str, object], where: str = "", values: bool = True
) -> SpecT:
    """Validates, turning pydantic's report into one line per problem. `values=False` leaves
    out the values given: an answer to a request must not repeat them (they may be secrets)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(explain(exc.errors(include_url=False), where, values)) from None


def explain(errors: Sequence[Mapping[str, Any]], where: str = "", values: bool = True) -> str:
    """One line per error of a pydantic report: the field, and the rule it broke."""
    lines = []
    prefix = f"{where}: " if where else ""
    for err in errors:
        field = ".".join(str(p) for p in err["loc"]) or "input"
        msg = re.sub(r"^Value error, ", "", err["msg"])
        if err["type"] == "extra_forbidden":
            # Its name is input too: shown only where values are.
            lines.append(
                f"{prefix}{field}: unknown field"
                if values
                else f"{prefix}a field this record does not have"
            )
        elif err["type"] == "missing":
            lines.append(f"{prefix}{field}: required")
        elif values:
            lines.append(f"{prefix}{field} = {err.get('input')!r}: {msg}")
        else:
            lines.append(f"{prefix}{field}: {msg}")
    return "\n".join(lines)


class AccountFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    user_id: str = Field(min_length=1, max_length=200)
    platform: Platform
    connected_via: Literal["facebook_login", "instagram_login"] | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=500)
    access_token_expires_at: str | None = None
    refresh_token_expires_at: str | None = None

    @model_validator(mode="after")
    def _instagram_says_how(self) -> AccountFields:
        if self.platform == Platform.INSTAGRAM and self.connected_via is None:
            raise ValueError(
                "an Instagram account needs connected_via: facebook_login or instagram_login"
            )
        if self.platform != Platform.INSTAGRAM and self.connected_via is not None:
            raise ValueError("connected_via is only for Instagram accounts")
        return self


class AccountSpec(AccountFields):
    id: Identifier


class PostFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    listing_id: Identifier
    account_id: Identifier
    platform_post_id: str = Field(min_length=1, max_length=500)
    permalink: str | None = Field(default=None, max_length=2000)
    published_at: str | None = None

    @field_validator("permalink")
    @classmethod
    def _permalink(cls, v: str | None) -> str | None:
        return None if v is None else _url(v, "permalink")


class PostSpec(PostFields):
    id: Identifier


def check_post_id(platform: str, platform_post_id: str) -> None:
    """The id must have the shape its platform uses; raises SpecError naming the rule (not
    the id given: the API's answers never repeat input)."""
    rule = REGISTRY[platform].post_id
    if not rule.matches(platform_post_id):
        raise SpecError(f"platform_post_id: not a {platform} post id ({rule.describe()})")


# An address as people write them: a local part, one @, and a domain of dot-separated labels
# ending in a top-level name. Deliverability is the mail server's to judge; this keeps typos
# (no @, spaces, two @) out. The reserved test domains (RFC 2606: .invalid, .example) pass:
# the sandbox's users have them.
_EMAIL = re.compile(
    r"^(?![.])(?!.*[.][.])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}(?<![.])"
    r"@(?=.{4,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?[.])+[A-Za-z]{2,63}$"
)


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("not an e-mail address (like agent@example.com)")
    return value


def _time_zone(value: str) -> str:
    if value not in _time_zones():
        raise ValueError("not an IANA time zone name (like America/Los_Angeles, or UTC)")
    return value


class UserFields(BaseModel):
    """A user: who owns connections, listings and accounts, and how they are notified."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    display_name: str = Field(min_length=1, max_length=200)
    email: Annotated[str, Field(max_length=254), AfterValidator(_email)] | None = None
    time_zone: Annotated[str, Field(max_length=64), AfterValidator(_time_zone)] = "UTC"
    # Types (`listing.sold`), families (`listing.*`) or `*`: the rule of every event filter.
    notify_events: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    notify_mode: NotifyMode = NotifyMode.IMMEDIATE

    @field_validator("notify_events")
    @classmethod
    def _event_types(cls, v: list[str]) -> list[str]:
        try:
            event_types.expand(v)
        except event_types.UnknownEventType as exc:
            raise ValueError(str(exc)) from None
        return list(dict.fromkeys(v))  # each once, in the order given


class UserSpec(UserFields):
    id: Identifier
