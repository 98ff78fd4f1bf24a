"""The daemon's HTTP app: health and metrics without auth, the /v1 API with a bearer token.

Errors are problem details (problems.py) with a `detail` that names what is wrong, and never
repeats a value of the body or the query string (it may be a secret): 400 for a body that
cannot be decoded, 401 without a valid token, 403 for a token without the scope, 404 for an
unknown route or record, 405 for a method the route has not, 409 for a request that conflicts
with the current state, 413 for an oversized body, 415 for a body not sent as JSON, 422 for a
body, parameter or id that does not validate, 503 while the API is off or the daemon stops.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.config import Settings
from daemon.service import problems
from daemon.service.access_log import AccessLog
from daemon.service.admin import IMPORT_PATH, admin_routes
from daemon.service.auth import TokenCheck
from daemon.service.event_routes import event_routes
from daemon.service.health import Answer, health_routes, readyz_answer, status_answer
from daemon.service.problems import PROBLEM_JSON, problem
from daemon.service.push_routes import (
    PushInbox,
    PushTokenFirst,
    push_routes,
    pushed_connection,
)
from daemon.service.state import ServiceState
from daemon.service.ui_routes import mount_ui
from daemon.service.user_routes import user_routes
from daemon.service.webhook_routes import webhook_routes


def build_app(state: ServiceState) -> FastAPI:
    app = FastAPI(
        title="mls-sync",
        version=state.version,
        description="Keeps listings in step with the MLS and takes sold listings' posts down.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    app.include_router(health_routes(state))
    app.include_router(admin_routes(state))
    app.include_router(webhook_routes())
    app.include_router(event_routes(state))
    app.include_router(user_routes(state))
    app.include_router(push_routes(PushInbox.of(state)))
    mount_ui(app, state)

    tokens = TokenCheck(state.runtime.db, state.api_token)
    app.state.tokens = tokens

    async def token_first(request: Request) -> JSONResponse | None:
        # FastAPI parses a JSON body before it runs the token check: a caller without the
        # token (or its scope) hears about that first, and nothing about the body.
        if no := await tokens.refusal(request):
            return problem(no.status_code, str(no.detail), headers=no.headers)
        return None

    problems.install(app, token_first)
    problems.document_problems(app)
    daemon = state.settings.daemon
    app.add_middleware(BodyLimit, limit_for=body_limits(state.settings))
    app.add_middleware(PushTokenFirst, db=state.runtime.db)
    app.add_middleware(AnnounceWrites, changed=state.board.changed)
    app.add_middleware(
        PolledRoutes,
        answers={
            "/readyz": functools.partial(readyz_answer, state),
            "/status": functools.partial(status_answer, state),
        },
    )
    if daemon.access_log:  # added last, so outermost
        app.add_middleware(AccessLog)
    return app


def build_push_app(inbox: PushInbox, settings: Settings, version: str) -> FastAPI:
    """The app on [push]'s own address: the push route alone, for the MLS to reach, while
    the API, the status page and the metrics stay on [daemon]'s (loopback) address."""
    app = FastAPI(
        title="mls-sync push",
        version=version,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # nothing but the push route is served there
    )
    app.include_router(push_routes(inbox))

    async def nothing_first(request: Request) -> JSONResponse | None:
        return None

    problems.install(app, nothing_first)
    app.add_middleware(BodyLimit, limit_for=body_limits(settings))
    app.add_middleware(PushTokenFirst, db=inbox.db)
    if settings.daemon.access_log:
        app.add_middleware(AccessLog)
    return app


def body_limits(settings: Settings) -> Callable[[str], int]:
    """Each path's largest body: a bulk import's and a push's are larger than the rest."""
    daemon, push_limit = settings.daemon, settings.push.max_body_bytes

    def limit_for(path: str) -> int:
        if path == IMPORT_PATH:
            return daemon.max_import_bytes
        if pushed_connection(path) is not None:
            return push_limit
        return daemon.max_body_bytes

    return limit_for


class PolledRoutes:
    """GET /readyz and /status, answered without FastAPI's routing, request objects and
    dependency solving. Load balancers and dashboards poll them hundreds of times a second
    while a cycle runs on the same event loop; this halves what each answer costs (the load
    test in docs/reliability.md). FastAPI still declares both routes (OpenAPI, other methods),
    and its handlers give the very same answers."""

    def __init__(self, app: ASGIApp, answers: dict[str, Callable[[], Awaitable[Answer]]]) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.answers.get(scope["path"]) if scope["type"] == "http" else None
        if answer is None or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        status, media_type, body = await answer()
        headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class AnnounceWrites:
    """Tells the status board about a write before its answer goes out, so a caller's next
    /status shows it (the board otherwise answers from a snapshot up to a second old)."""

    def __init__(self, app: ASGIApp, changed: Callable[[], None]) -> None:
        self.app = app
        self.changed = changed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return

        async def announcing(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.changed()
            await send(message)

        await self.app(scope, receive, announcing)


class BodyLimit:
    """Refuses a body over `limit` bytes with 413, whether it declares its length or is sent
    chunked. The body is read whole (at most `limit` bytes) before the app sees it: a limit
    found while the app reads its body would surface as the app's own parse error, as FastAPI
    turns any failure of reading a body into 400."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for  # path -> its limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        try:
            body = await _read_body(receive, limit)
        except _TooLarge:
            await _too_large(send, limit)
            return
        except _Gone:
            return  # the client left before its body arrived: nobody to answer
        await self.app(scope, _replaying(body, receive), send)


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Gone
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body, read already, as one message; then whatever comes next (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _too_large(send: Send, limit: int) -> None:
    answer = problem(413, f"request body over {limit} bytes")
    body = answer.body
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
