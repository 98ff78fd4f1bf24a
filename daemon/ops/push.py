"""RESO push (RCP-28): the MLS POSTs change-log events to the daemon (docs/mls-reso.md "Push").

A push is checked in this order, so that a caller learns nothing it has no right to: its
bearer token (the connection's push token; an unknown connection answers as a wrong token
does), then its body, then the room left in the connection's queue. An accepted push is
queued durably before it is answered; the events are applied afterwards, by the same by-key
reads as the events read from the change log.

A push token is 32 random bytes behind a recognisable `mlspush_` prefix. Only its SHA-256 is
stored (as for API tokens: for a random token that long a fast hash is enough), and it is
shown once, when made.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from daemon import foreign_json
from daemon.enums import QueryMode
from daemon.foreign_text import NO_CONTROL_CHARACTERS
from daemon.mls.entity_events import MAX_SEQUENCE, names_resource
from daemon.specs import EVENTS_RESOURCE, SpecError, explain
from daemon.store import connections, pushed_events
from daemon.store.database import Database
from daemon.store.pushed_events import PushedEvent
from daemon.timestamps import iso, utcnow

PREFIX = "mlspush_"
CONTEXT = "urn:reso:metadata:2.0:resource:entityevent"
MAX_EVENTS_PER_PUSH = 10_000
MAX_SOURCE_LENGTH = 255  # RCP-28's EntityEventSource


class UnreadablePush(ValueError):
    """The body is not JSON at all."""


class _Event(BaseModel):
    """One EntityEvent as pushed. Other fields (ResourceRecordUrl, a vendor's `Data` with
    the whole record) are allowed and left aside: the record read is the truth."""

    model_config = ConfigDict(extra="allow", frozen=True)

    EntityEventSequence: Annotated[StrictInt, Field(gt=0, le=MAX_SEQUENCE)]
    ResourceName: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    ResourceRecordKey: Annotated[
        StrictStr, Field(min_length=1, max_length=255, pattern=NO_CONTROL_CHARACTERS)
    ]


class _Batch(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    value: Annotated[list[_Event], Field(min_length=1, max_length=MAX_EVENTS_PER_PUSH)]


def parse_push(body: bytes) -> list[_Event]:
    """The events of a push body: one EntityEvent, or a batch in `value`. A body that is not
    that is refused whole: UnreadablePush when it is not JSON, SpecError (naming the fields,
    never their values) when it is not events."""
    try:
        data = foreign_json.loads(body)
    except ValueError:
        raise UnreadablePush("the body cannot be read as JSON (or is nested too deep)") from None
    if not isinstance(data, dict):
        raise SpecError("the body must be a JSON object: one EntityEvent, or a batch in `value`")
    try:
        if "value" in data:
            return list(_Batch.model_validate(data).value)
        return [_Event.model_validate(data)]
    except ValidationError as exc:
        raise SpecError(explain(exc.errors(include_url=False), values=False)) from None


Outcome = Literal["queued", "full"]


@dataclass(frozen=True)
class Received:
    outcome: Outcome
    queued: int = 0  # events of the connection's listings resource, queued
    ignored: int = 0  # events of other resources (Member, Media...): nothing to apply


def new_push_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def push_token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def authorized(db: Database, connection_id: str, presented: str | None) -> bool:
    """Whether `presented` is the connection's push token (compared in constant time)."""
    row = await connections.get(db, connection_id)
    if row is None or row.push_token_sha256 is None or not presented:
        return False
    if row.mode != QueryMode.EVENTS:  # its token was cleared when it left the mode
        return False
    return hmac.compare_digest(push_token_sha256(presented), row.push_token_sha256)


async def receive(
    db: Database,
    connection_id: str,
    events: list[_Event],
    source: str | None,
    queue_limit: int,
) -> Received:
    """Queues the events of the connection's listings (ResourceName Property); the caller
    has checked the token and parsed the body."""
    mine = [
        PushedEvent(e.EntityEventSequence, e.ResourceRecordKey)
        for e in events
        if names_resource(e.ResourceName, EVENTS_RESOURCE)
    ]
    ignored = len(events) - len(mine)
    if not mine:
        return Received("queued", 0, ignored)
    source = source[:MAX_SOURCE_LENGTH] if source else None
    if not await pushed_events.queue(db, connection_id, mine, source, iso(utcnow()), queue_limit):
        return Received("full")
    return Received("queued", len(mine), ignored)
