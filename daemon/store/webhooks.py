"""Webhook endpoints, their deliveries and the attempts of each (docs/webhooks.md).

An endpoint's `cursor` is the last event it took (made a delivery of) or skipped (not for
it). A delivery is taken in the same transaction that moves the cursor past its event, and at
most one delivery per endpoint is pending (a unique index): the next event is taken only once
it is delivered or given up, so an endpoint sees its events in order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.enums import DeliveryState
from daemon.store import events
from daemon.store.database import Database, delete_in_batches
from daemon.store.dialect import both, json_values
from daemon.store.paging import Slice, read_slice
from daemon.store.records import (
    EventRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    from_row,
)

CREATE = """
INSERT INTO webhook_endpoints (url, event_types, user_id, description, secret_encrypted,
    cursor, created_at, updated_at)
VALUES (:url, :event_types, :user_id, :description, :secret, :cursor, :now, :now)
RETURNING *
"""
GET = "SELECT * FROM webhook_endpoints WHERE id = ?"
LIST = "SELECT * FROM webhook_endpoints ORDER BY id"
ENABLED_IDS = "SELECT id FROM webhook_endpoints WHERE enabled = 1 ORDER BY id"
REMOVE = "DELETE FROM webhook_endpoints WHERE id = :id"
ENABLE = """
UPDATE webhook_endpoints SET enabled = 1, disabled_reason = NULL, failing_since = NULL,
    updated_at = :now
WHERE id = :id
"""
DISABLE = """
UPDATE webhook_endpoints SET enabled = 0, disabled_reason = :reason, updated_at = :now
WHERE id = :id
"""
ROTATE = """
UPDATE webhook_endpoints SET secret_encrypted = :secret, previous_secret_encrypted = :previous,
    previous_secret_until = :until, updated_at = :now
WHERE id = :id
"""

PENDING = "SELECT * FROM webhook_deliveries WHERE endpoint_id = ? AND state = 'pending'"
DELIVERY = "SELECT * FROM webhook_deliveries WHERE id = ?"
DELIVERIES = """
SELECT * FROM webhook_deliveries WHERE endpoint_id = :endpoint_id AND id < :before
ORDER BY id DESC LIMIT :limit
"""
MOVE_CURSOR = """
UPDATE webhook_endpoints SET cursor = :to WHERE id = :id AND cursor = :from AND enabled = 1
"""
DELIVERED = """
INSERT INTO webhook_deliveries (endpoint_id, event_id, state, attempts, last_status,
    created_at, updated_at)
VALUES (:endpoint_id, :event_id, 'delivered', 1, :status_code, :at, :at)
"""
# The attempt of a delivery just made by DELIVERED, found by its (endpoint, event) key: a
# batch of them is two statements, not two per event.
DELIVERED_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, at, status_code, latency_ms, error,
    response_excerpt, replay)
SELECT id, :at, :status_code, :latency_ms, :error, :excerpt, 0
FROM webhook_deliveries WHERE endpoint_id = :endpoint_id AND event_id = :event_id
"""
TAKE = """
INSERT INTO webhook_deliveries (endpoint_id, event_id, state, next_attempt_at, created_at,
    updated_at)
VALUES (:endpoint_id, :event_id, 'pending', :now, :now, :now)
RETURNING *
"""
ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, at, status_code, latency_ms, error,
    response_excerpt, replay)
VALUES (:delivery_id, :at, :status_code, :latency_ms, :error, :excerpt, :replay)
"""
SETTLE = """
UPDATE webhook_deliveries SET state = :state, attempts = attempts + 1,
    next_attempt_at = :next_attempt_at, last_status = :status_code, last_error = :error,
    updated_at = :at
WHERE id = :delivery_id
"""
REPLAYED = """
UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = :status_code,
    last_error = :error, updated_at = :at
WHERE id = :delivery_id
"""
SUCCEEDED = "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = :id"
FAILED = "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, :at) WHERE id = :id"
ATTEMPTS = "SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY id"
ATTEMPTS_OF = both(
    "SELECT * FROM webhook_attempts WHERE delivery_id IN ({ids}) ORDER BY delivery_id, id",
    ids=json_values("?", as_type="bigint"),
)
EVENT = "SELECT * FROM events WHERE id = ?"
# Per enabled endpoint, when its oldest event not yet delivered was written: the pending
# delivery's, else the first event past its cursor (which may not be for it: an upper bound).
OLDEST_UNDELIVERED = """
SELECT e.id,
    coalesce(
        (SELECT ev.created_at FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_id
         WHERE d.endpoint_id = e.id AND d.state = 'pending'),
        (SELECT ev.created_at FROM events ev WHERE ev.id > e.cursor ORDER BY ev.id LIMIT 1))
FROM webhook_endpoints e WHERE e.enabled = 1
"""


@dataclass(frozen=True)
class Attempt:
    """One try of a delivery, as recorded."""

    delivery_id: int
    at: str
    status_code: int | None
    latency_ms: int
    error: str | None
    excerpt: str | None


@dataclass(frozen=True)
class Answered:
    """An event answered 2xx at its first attempt, not yet recorded."""

    event_id: int
    attempt: Attempt


@dataclass(frozen=True)
class Settlement:
    """What an attempt leaves: the delivery's state, and whether its endpoint is disabled."""

    state: DeliveryState
    next_attempt_at: str | None = None
    disable_reason: str | None = None  # set: the endpoint is disabled, with an event


async def create(
    db: Database,
    url: str,
    event_types: str,
    user_id: str | None,
    description: str | None,
    secret_encrypted: str,
    cursor: int,
    now: str,
) -> WebhookEndpointRow:
    params = {
        "url": url,
        "event_types": event_types,
        "user_id": user_id,
        "description": description,
        "secret": secret_encrypted,
        "cursor": cursor,
        "now": now,
    }
    async with db.transaction() as conn:
        row = await conn.fetch_one(CREATE, params)
    assert row is not None  # RETURNING of an INSERT that cannot conflict
    return from_row(WebhookEndpointRow, row)


async def get(db: Database, endpoint_id: int) -> WebhookEndpointRow | None:
    row = await db.fetch_one(GET, (endpoint_id,))
    return from_row(WebhookEndpointRow, row) if row else None


async def list_all(db: Database) -> list[WebhookEndpointRow]:
    return [from_row(WebhookEndpointRow, r) for r in await db.fetch_all(LIST)]


async def enabled_ids(db: Database) -> list[int]:
    return [int(r[0]) for r in await db.fetch_all(ENABLED_IDS)]


async def remove(db: Database, endpoint_id: int) -> bool:
    """Its deliveries and attempts go with it."""
    return await db.write_one(REMOVE, {"id": endpoint_id}) == 1


async def enable(db: Database, endpoint_id: int, now: str) -> None:
    """Enabled again, from where its cursor is, with a fresh retry window."""
    await db.write_one(ENABLE, {"id": endpoint_id, "now": now})


async def disable(db: Database, endpoint_id: int, reason: str, now: str) -> None:
    await db.write_one(DISABLE, {"id": endpoint_id, "reason": reason, "now": now})


async def rotate(
    db: Database,
    endpoint_id: int,
    secret_encrypted: str,
    previous_encrypted: str,
    previous_until: str,
    now: str,
) -> None:
    params = {
        "id": endpoint_id,
        "secret": secret_encrypted,
        "previous": previous_encrypted,
        "until": previous_until,
        "now": now,
    }
    await db.write_one(ROTATE, params)


async def pending(db: Database, endpoint_id: int) -> WebhookDeliveryRow | None:
    row = await db.fetch_one(PENDING, (endpoint_id,))
    return from_row(WebhookDeliveryRow, row) if row else None


async def delivery(db: Database, delivery_id: int) -> WebhookDeliveryRow | None:
    row = await db.fetch_one(DELIVERY, (delivery_id,))
    return from_row(WebhookDeliveryRow, row) if row else None


async def deliveries(
    db: Database, endpoint_id: int, before: int, limit: int
) -> list[WebhookDeliveryRow]:
    """An endpoint's deliveries with ids below `before`, newest first."""
    params = {"endpoint_id": endpoint_id, "before": before, "limit": limit}
    async with db.reading() as conn:
        rows = await conn.fetch_all(DELIVERIES, params)
    return [from_row(WebhookDeliveryRow, r) for r in rows]


async def attempts(db: Database, delivery_id: int) -> list[WebhookAttemptRow]:
    return [from_row(WebhookAttemptRow, r) for r in await db.fetch_all(ATTEMPTS, (delivery_id,))]


async def attempts_of(
    db: Database, delivery_ids: Sequence[int]
) -> dict[int, list[WebhookAttemptRow]]:
    """The attempts of several deliveries at once (a page of them), in order."""
    found: dict[int, list[WebhookAttemptRow]] = {d: [] for d in delivery_ids}
    for r in await db.fetch_all(ATTEMPTS_OF, (json.dumps(list(delivery_ids)),)):
        row = from_row(WebhookAttemptRow, r)
        found[row.delivery_id].append(row)
    return found


async def event(db: Database, event_id: int) -> EventRow | None:
    row = await db.fetch_one(EVENT, (event_id,))
    return from_row(EventRow, row) if row else None


async def take(
    db: Database, endpoint_id: int, cursor_was: int, cursor: int, event_id: int | None, now: str
) -> WebhookDeliveryRow | None:
    """Moves the endpoint's cursor from `cursor_was` to `cursor` and, with `event_id`, makes
    that event's delivery, in one transaction. Nothing happens (None) if the cursor moved
    meanwhile or the endpoint was disabled."""
    async with db.transaction() as conn:
        params = {"id": endpoint_id, "from": cursor_was, "to": cursor}
        moved = await conn.execute(MOVE_CURSOR, params)
        if moved != 1 or event_id is None:
            return None
        made = {"endpoint_id": endpoint_id, "event_id": event_id, "now": now}
        row = await conn.fetch_one(TAKE, made)
    return from_row(WebhookDeliveryRow, row) if row else None


async def delivered(
    db: Database, endpoint_id: int, cursor_was: int, answered: Sequence[Answered], upto: int
) -> bool:
    """Events delivered at their first attempt, in event order, recorded in one transaction:
    their deliveries, their attempts, the cursor on `upto` (their last, or past it: events
    after it that are not for the endpoint). False (nothing written) if the cursor moved
    meanwhile or the endpoint was disabled."""
    async with db.transaction() as conn:
        params = {"id": endpoint_id, "from": cursor_was, "to": upto}
        if await conn.execute(MOVE_CURSOR, params) != 1:
            return False
        if not answered:
            return True
        made = [
            {**_attempt_params(a.attempt), "endpoint_id": endpoint_id, "event_id": a.event_id}
            for a in answered
        ]
        await conn.execute_many(DELIVERED, made)
        await conn.execute_many(DELIVERED_ATTEMPT, made)
        await conn.execute(SUCCEEDED, {"id": endpoint_id})
    return True


async def settle(db: Database, endpoint_id: int, attempt: Attempt, after: Settlement) -> None:
    """Records an attempt of the pending delivery and what it leaves, in one transaction:
    the delivery's state, the endpoint's failing streak, and, when it is disabled, its
    `webhook.endpoint_disabled` event."""
    async with db.transaction() as conn:
        await conn.execute(ATTEMPT, {**_attempt_params(attempt), "replay": 0})
        await conn.execute(
            SETTLE,
            {
                **_attempt_params(attempt),
                "state": after.state,
                "next_attempt_at": after.next_attempt_at,
            },
        )
        ok = after.state == DeliveryState.DELIVERED
        await conn.execute(SUCCEEDED if ok else FAILED, {"id": endpoint_id, "at": attempt.at})
        if after.disable_reason is not None:
            await events.endpoint_disabled(conn, endpoint_id, after.disable_reason, attempt.at)
            await conn.execute(
                DISABLE, {"id": endpoint_id, "reason": after.disable_reason, "now": attempt.at}
            )


async def record_replay(db: Database, attempt: Attempt) -> None:
    """A replay is one more attempt: it changes neither the delivery's state nor the order."""
    async with db.transaction() as conn:
        await conn.execute(ATTEMPT, {**_attempt_params(attempt), "replay": 1})
        await conn.execute(REPLAYED, _attempt_params(attempt))


async def oldest_undelivered(db: Database) -> dict[int, str | None]:
    """Enabled endpoint id -> when its oldest undelivered event was written (None: none)."""
    return {int(r[0]): r[1] for r in await db.fetch_all(OLDEST_UNDELIVERED)}


def _attempt_params(attempt: Attempt) -> dict[str, object]:
    return {
        "delivery_id": attempt.delivery_id,
        "at": attempt.at,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
        "excerpt": attempt.excerpt,
    }


# Deliveries done with (delivered or given up) before the retention, with their attempts (the
# foreign key cascades); a pending one stays whatever its age.
PRUNE = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE state != 'pending' AND updated_at < :before
    LIMIT :batch)
"""


async def prune(db: Database, before: str, batch: int = 5000) -> int:
    """Deletes the records of deliveries done with before `before`, a batch per transaction;
    returns how many went."""
    return await delete_in_batches(db, PRUNE, {"before": before}, batch)


DISABLED = "SELECT * FROM webhook_endpoints WHERE enabled = 0 ORDER BY id LIMIT :limit"
COUNT_DISABLED = "SELECT count(*) FROM webhook_endpoints WHERE enabled = 0"


async def disabled(db: Database, limit: int) -> Slice[WebhookEndpointRow]:
    """The disabled endpoints (at most `limit`), and how many there are."""
    return await read_slice(db, WebhookEndpointRow, DISABLED, COUNT_DISABLED, {}, limit)
