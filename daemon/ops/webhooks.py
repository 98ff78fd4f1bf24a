"""Webhook endpoints: made (with a `whsec_` secret shown once), listed, enabled, disabled,
removed, their secret rotated; their deliveries and attempts read, a delivery replayed.

A secret is stored encrypted with the SecretBox and never shown again, nor logged. A rotated
secret keeps signing beside the new one for [webhooks] secret_overlap_seconds, so a receiver
can switch without losing a delivery.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from daemon.credentials import require_box
from daemon.errors import Conflict, found
from daemon.ops.context import Topic
from daemon.ops.users import require_users
from daemon.ops.views import View
from daemon.outbound import signing
from daemon.outbound.payload import event_body
from daemon.outbound.selection import check_types
from daemon.outbound.urls import check_url
from daemon.outbound.worker import Deliveries, policy_of
from daemon.specs import SpecError
from daemon.store import events
from daemon.store import webhooks as store
from daemon.store.records import (
    EventRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)
from daemon.timestamps import iso

MAX_DESCRIPTION = 200
DELIVERIES_PAGE = 100
ENDPOINT = "webhook endpoint"


@dataclass(frozen=True)
class EndpointSpec:
    """What a caller gives for a new endpoint."""

    url: str
    event_types: Sequence[str] = ()  # empty: every type
    user_id: str | None = None  # only this user's events
    description: str | None = None
    after_event: int | None = None  # deliver events after this id (None: from now on)


def endpoint_view(row: WebhookEndpointRow, now: str) -> View:
    """Never the secrets: only whether a previous one still signs, and until when."""
    rotating = row.previous_secret_until is not None and now < row.previous_secret_until
    return {
        "id": row.id,
        "url": row.url,
        "event_types": json.loads(row.event_types),
        "user_id": row.user_id,
        "description": row.description,
        "enabled": bool(row.enabled),
        "disabled_reason": row.disabled_reason,
        "secret": "<set>",
        "previous_secret_until": row.previous_secret_until if rotating else None,
        "cursor": row.cursor,
        "failing_since": row.failing_since,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def delivery_view(row: WebhookDeliveryRow) -> View:
    return {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "event_id": row.event_id,
        "webhook_id": signing.message_id(row.event_id),
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def attempt_view(row: WebhookAttemptRow) -> View:
    return {
        "id": row.id,
        "delivery_id": row.delivery_id,
        "at": row.at,
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "error": row.error,
        "response_excerpt": row.response_excerpt,
        "replay": bool(row.replay),
    }


class WebhookOps(Topic):
    async def create(self, spec: EndpointSpec) -> tuple[View, str]:
        """The endpoint and its secret, which nothing shows again. Nothing is stored when any
        field is refused."""
        url, types = await self._checked(spec)
        cursor = spec.after_event
        if cursor is None:
            cursor = await events.last_id(self.ctx.db)
        secret = signing.new_secret()
        encrypted = require_box(self.ctx.box).encrypt(secret)
        row = await store.create(
            self.ctx.db,
            url,
            json.dumps(types),
            spec.user_id,
            spec.description,
            encrypted,
            cursor,
            self.ctx.now(),
        )
        self.ctx.audit("created", "webhook_endpoint", row.id, event_types=types)
        return endpoint_view(row, self.ctx.now()), secret

    async def _checked(self, spec: EndpointSpec) -> tuple[str, list[str]]:
        """The URL as it will be called and the event types as stored; SpecError naming the
        first field that is refused."""
        url = check_url(spec.url, policy_of(self.ctx.webhooks))
        types = check_types(spec.event_types)
        text = spec.description
        if text is not None and (len(text) > MAX_DESCRIPTION or not text.isprintable()):
            raise SpecError(f"description: at most {MAX_DESCRIPTION} printable characters")
        await require_users(self.ctx.db, [spec.user_id], "user_id")
        if spec.after_event is not None and spec.after_event < 0:
            raise SpecError("after_event: an event id, 0 or more (0: every event kept)")
        last = await events.last_id(self.ctx.db)
        if spec.after_event is not None and spec.after_event > last:
            raise SpecError(
                f"after_event: past the last event ({last}); leave it out to start from now"
            )
        return url, types

    async def list(self) -> list[View]:
        now = self.ctx.now()
        return [endpoint_view(r, now) for r in await store.list_all(self.ctx.db)]

    async def get(self, endpoint_id: int) -> View:
        return endpoint_view(await self._endpoint(endpoint_id), self.ctx.now())

    async def remove(self, endpoint_id: int) -> View:
        await self._endpoint(endpoint_id)
        await store.remove(self.ctx.db, endpoint_id)
        self.ctx.audit("removed", "webhook_endpoint", endpoint_id)
        return {"removed": endpoint_id}

    async def enable(self, endpoint_id: int) -> View:
        """From where its cursor is, with a fresh retry window."""
        await self._endpoint(endpoint_id)
        await store.enable(self.ctx.db, endpoint_id, self.ctx.now())
        self.ctx.audit("enabled", "webhook_endpoint", endpoint_id)
        return await self.get(endpoint_id)

    async def disable(self, endpoint_id: int) -> View:
        row = await self._endpoint(endpoint_id)
        if row.enabled:
            reason = f"disabled by {self.ctx.actor}"
            await store.disable(self.ctx.db, endpoint_id, reason, self.ctx.now())
        self.ctx.audit("disabled", "webhook_endpoint", endpoint_id)
        return await self.get(endpoint_id)

    async def rotate_secret(self, endpoint_id: int) -> tuple[View, str]:
        """A new secret, shown once; the old one signs beside it until the overlap ends."""
        row = await self._endpoint(endpoint_id)
        secret = signing.new_secret()
        encrypted = require_box(self.ctx.box).encrypt(secret)
        until = iso(self.ctx.clock() + timedelta(seconds=self.ctx.webhooks.secret_overlap_seconds))
        await store.rotate(
            self.ctx.db, endpoint_id, encrypted, row.secret_encrypted, until, self.ctx.now()
        )
        self.ctx.audit("secret_rotated", "webhook_endpoint", endpoint_id, overlap_until=until)
        return await self.get(endpoint_id), secret

    async def deliveries(
        self, endpoint_id: int, before: int | None = None, limit: int = DELIVERIES_PAGE
    ) -> builtins.list[View]:
        """Newest first; `before`: only deliveries with a smaller id."""
        await self._endpoint(endpoint_id)
        if not 1 <= limit <= 1000:
            raise SpecError("limit: 1 to 1000")
        rows = await store.deliveries(self.ctx.db, endpoint_id, before or 2**63 - 1, limit)
        return [delivery_view(r) for r in rows]

    async def recent(self, endpoint_id: int, limit: int) -> builtins.list[View]:
        """The endpoint's last `limit` deliveries, newest first, each with its attempts."""
        deliveries = await self.deliveries(endpoint_id, limit=limit)
        attempts = await store.attempts_of(self.ctx.db, [d["id"] for d in deliveries])
        return [{**d, "items": [attempt_view(a) for a in attempts[d["id"]]]} for d in deliveries]

    async def attempts(self, delivery_id: int) -> View:
        delivery = found(await store.delivery(self.ctx.db, delivery_id), "webhook delivery")
        rows = await store.attempts(self.ctx.db, delivery_id)
        return {**delivery_view(delivery), "items": [attempt_view(r) for r in rows]}

    async def replay(self, delivery_id: int) -> View:
        """Sends the delivery's event once more, now, signed afresh; recorded as an attempt
        (its state and the endpoint's order are unchanged). Answers with that attempt."""
        delivery = found(await store.delivery(self.ctx.db, delivery_id), "webhook delivery")
        endpoint = await self._endpoint(delivery.endpoint_id)
        event = await store.event(self.ctx.db, delivery.event_id)
        if event is None:
            raise Conflict("the event of this delivery was pruned: it cannot be sent again")
        sent = await self._send_now(endpoint, event, delivery_id)
        self.ctx.audit("replayed", "webhook_delivery", delivery_id, status=sent["status_code"])
        return sent

    async def _send_now(
        self, endpoint: WebhookEndpointRow, event: EventRow, delivery_id: int
    ) -> View:
        settings = self.ctx.webhooks
        worker = Deliveries(self.ctx.db, self.ctx.box, settings, clock=self.ctx.clock)
        async with worker.opened():
            sent = await worker.send(endpoint, event.id, event_body(event))
        attempt = store.Attempt(
            delivery_id, self.ctx.now(), sent.status_code, sent.latency_ms, sent.error, sent.excerpt
        )
        await store.record_replay(self.ctx.db, attempt)
        return {
            "delivery_id": delivery_id,
            "status_code": sent.status_code,
            "latency_ms": sent.latency_ms,
            "error": sent.error,
            "response_excerpt": sent.excerpt,
        }

    async def _endpoint(self, endpoint_id: int) -> WebhookEndpointRow:
        return found(await store.get(self.ctx.db, endpoint_id), ENDPOINT)
