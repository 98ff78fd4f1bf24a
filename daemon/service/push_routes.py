"""POST /v1/mls-connections/{id}/entity-events: the MLS pushes change-log events (RESO RCP-28,
docs/mls-reso.md "Push"). Served beside the API, and alone on [push]'s address when it is set
(api.py `build_push_app`).

The route has no API-token requirement: the MLS presents the connection's push token, which
only this route accepts. The events are queued durably before the answer (a crash after it
loses nothing) and applied by the connection's poller at once (change_log_polls.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.security import HTTPBearer
from pydantic import Field
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.config import PushSettings
from daemon.ops import push
from daemon.ops.views import View
from daemon.service.bodies import ConnectionId
from daemon.service.problems import database_problem, problem, problem_responses
from daemon.service.schemas import Shape
from daemon.service.state import ServiceState
from daemon.store.database import Database
from daemon.store.errors import StoreError

PUSH_PATH = "/v1/mls-connections/{connection_id}/entity-events"
PUSH_REFUSED = "missing or wrong push token (see `mls-sync connections push-token ID`)"
# The push route's own scheme in the OpenAPI document: its token is no API token.
PUSH_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="push_token",
    description="The connection's push token (`mls-sync connections push-token ID`), which "
    "only this route accepts; an API token is refused here.",
)
QUEUE_FULL = "too many pushed events wait to be applied for this connection; send again later"


# Where PushTokenFirst leaves the connection whose token it accepted, for the route.
AUTHORIZED = "push_authorized_for"


def pushed_connection(path: str) -> str | None:
    """The connection a push to `path` is for; None when `path` is no push route."""
    prefix, _, rest = path.partition("/v1/mls-connections/")
    connection_id, _, tail = rest.partition("/")
    if prefix or not connection_id or tail != "entity-events":
        return None
    return connection_id


class PushTokenFirst:
    """Checks a push's token before its body is read: on an address the MLS (and so anyone)
    reaches, a caller without the token must not get the daemon to take in a body of [push]
    max_body_bytes. It is the one check of the token: the route serves only what it
    accepted (AUTHORIZED in the request's state)."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection_id = pushed_connection(scope["path"]) if scope["type"] == "http" else None
        if connection_id is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        scheme, _, presented = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        token = presented.strip() if scheme.lower() == "bearer" else None
        try:
            accepted = await push.authorized(self.db, connection_id, token)
        except StoreError as exc:  # outside the app: its handlers do not see this one
            answer = database_problem(exc, scope, PUSH_PATH)
            if answer is None:
                raise
            await answer(scope, receive, send)
            return
        if accepted:
            scope.setdefault("state", {})[AUTHORIZED] = connection_id
            await self.app(scope, receive, send)
            return
        refused = problem(401, PUSH_REFUSED, headers={"WWW-Authenticate": "Bearer"})
        await refused(scope, receive, send)


class PushAccepted(Shape):
    queued: int = Field(description="events of listings (ResourceName Property), queued")
    ignored: int = Field(description="events of other resources: nothing to apply")


@dataclass(frozen=True)
class PushInbox:
    """What the push route needs: the database its events are queued in, [push] as the
    daemon applies it, and who applies a connection's queue when it has new events (the
    daemon's poller). The demo serves the route with one of its own."""

    db: Database
    settings: Callable[[], PushSettings]
    pushed: Callable[[str], None]

    @classmethod
    def of(cls, state: ServiceState) -> PushInbox:
        return cls(state.runtime.db, lambda: state.settings.push, state.change_log_polls.pushed)


def push_routes(inbox: PushInbox) -> APIRouter:
    router = APIRouter()

    @router.post(
        PUSH_PATH,
        summary="Receive EntityEvents the MLS pushes (RESO RCP-28), with the push token",
        response_model=PushAccepted,
        responses=problem_responses(400, 401, 413, 422, 429, 503),
        dependencies=[Depends(PUSH_BEARER)],  # the scheme, in the OpenAPI document
    )
    async def receive_push(
        connection_id: ConnectionId,
        request: Request,
        source: Annotated[
            str | None,
            Header(alias="EntityEventSource", description="the feed's label, recorded"),
        ] = None,
    ) -> View:
        """One EntityEvent, or a batch in `value`. 429 with Retry-After while the
        connection's queue is full ([push] queue_limit); 503 with Retry-After while the
        daemon's database is busy or cannot be reached."""
        if getattr(request.state, AUTHORIZED, None) != connection_id:  # PushTokenFirst's
            raise HTTPException(401, PUSH_REFUSED, headers={"WWW-Authenticate": "Bearer"})
        try:
            events = push.parse_push(await request.body())
        except push.UnreadablePush:
            raise HTTPException(400) from None  # answered as any undecodable body
        settings = inbox.settings()
        received = await push.receive(inbox.db, connection_id, events, source, settings.queue_limit)
        if received.outcome == "full":
            retry = str(settings.retry_after_seconds)
            raise HTTPException(429, QUEUE_FULL, headers={"Retry-After": retry})
        if received.queued:
            inbox.pushed(connection_id)
        return {"queued": received.queued, "ignored": received.ignored}

    return router
