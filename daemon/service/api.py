"""The daemon's HTTP app: health and metrics without auth, the /v1 API with a bearer token.

Errors are JSON with a `detail` that names what is wrong: 401 without a valid token, 404 for
an unknown route or record, 409 for a request that conflicts with the current state, 413 for
an oversized body, 422 for a body or id that does not validate.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.encryption import SecretKeyError
from daemon.service.admin import admin_routes
from daemon.service.health import health_routes
from daemon.service.state import ServiceState
from daemon.specs import SpecError
from daemon.sync.engine import SyncRefused


def build_app(state: ServiceState) -> FastAPI:
    app = FastAPI(
        title="mls-sync",
        version=state.version,
        description="Keeps listings in step with the MLS and takes sold listings' posts down.",
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(health_routes(state))
    app.include_router(admin_routes(state))

    @app.exception_handler(SyncRefused)
    async def refused(request: Request, exc: SyncRefused) -> JSONResponse:
        status = 404 if str(exc).startswith("no ") else 409
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(SpecError)
    async def invalid(request: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(LookupError)
    async def missing(request: Request, exc: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(exc.args[0] if exc.args else exc)}, status_code=404)

    @app.exception_handler(ValueError)
    async def conflict(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(SecretKeyError)
    async def no_key(request: Request, exc: SecretKeyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.add_middleware(BodyLimit, limit=state.settings.daemon.max_body_bytes)
    return app


class BodyLimit:
    """Refuses a body over `limit` bytes with 413, whether it declares its length or not."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail": "request body over {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
