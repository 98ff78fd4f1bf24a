"""The sandbox's stand-in for an app that takes webhooks: a real HTTP server on 127.0.0.1
(Starlette under the daemon's own Uvicorn wrapper) that checks every request it gets with the
`standardwebhooks` library, as an app would, against each secret it was told, and answers as
scripted. `mls-sync demo` registers it as an endpoint; the tests script its answers."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from daemon.serving import serving


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    body: str = "ok"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    verified: tuple[bool, ...]  # per secret of its path, in the order given

    @property
    def event(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    url: str = ""
    secrets: dict[str, list[str]] = field(default_factory=dict)  # path -> secrets to check
    script: dict[str, deque[Reply]] = field(default_factory=dict)  # path -> replies, in turn
    slow: dict[str, float] = field(default_factory=dict)  # path -> delay of every answer
    received: list[Received] = field(default_factory=list)
    answering: dict[str, int] = field(default_factory=dict)  # path -> requests being answered
    most_at_once: int = 0  # over all paths
    most_at_once_per_path: int = 0

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def reply(self, path: str, *replies: Reply) -> None:
        self.script.setdefault(path, deque()).extend(replies)

    def unverified(self) -> list[Received]:
        """Requests that some secret they were checked with did not verify."""
        return [r for r in self.received if not all(r.verified)]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = tuple(_verifies(s, body, headers) for s in self.secrets.get(path, []))
        self.received.append(Received(path, headers, body, time.monotonic(), verified))
        queue = self.script.get(path)
        reply = queue.popleft() if queue else Reply()
        delay = max(reply.delay, self.slow.get(path, 0.0))
        self.answering[path] = self.answering.get(path, 0) + 1
        self.most_at_once = max(self.most_at_once, sum(self.answering.values()))
        self.most_at_once_per_path = max(self.most_at_once_per_path, self.answering[path])
        try:
            if delay:
                await anyio.sleep(delay)
        finally:
            self.answering[path] -= 1
        return Response(reply.body, reply.status, reply.headers)

    async def wait_for(self, path: str, count: int, seconds: float = 20) -> list[Received]:
        """Until `count` requests came to `path` (TimeoutError after `seconds`)."""
        with anyio.fail_after(seconds):
            while len(self.at(path)) < count:  # noqa: ASYNC110 - the server is another task
                await anyio.sleep(0.02)
        return self.at(path)


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()

    async def any_post(request: Request) -> Response:
        return await receiver.handle(request)

    app = Starlette(routes=[Route("/{path:path}", any_post, methods=["POST"])])
    async with serving(app) as url:
        receiver.url = url
        yield receiver
