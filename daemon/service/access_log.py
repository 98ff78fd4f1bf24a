"""The HTTP access log: one `http_request` line per request, with its method, its route, its
status and how long the answer took.

The route is the template a request matched (`/v1/listings/{listing_id}`), never the path
itself, and the query string is never logged: ids and query values are the caller's, and a
query string may hold a secret. A request that matched no route, or was refused before routing
(413, a body too large), logs `route: null`. Health and metrics routes are logged at debug,
the rest at info: monitors poll them many times a second, and a line each would bury
everything else. `[daemon] access_log = false` turns it off.
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("mls_sync.http")

POLLED = frozenset({"/livez", "/healthz", "/readyz", "/status", "/metrics"})


class AccessLog:
    """Outermost, so that answers given before routing (413, the polled health answers) are
    logged too, and the duration covers all of the app's work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None  # None: the client left before any answer

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        except Exception:
            # Unhandled: Starlette's outermost middleware answers 500 after this one.
            status = status or 500
            raise
        finally:
            route = template(scope)
            at = log.debug if route in POLLED else log.info
            at(
                "http_request",
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


def template(scope: Scope) -> str | None:
    """The path template of the route the request matched, or None. The polled health routes
    are answered before routing (api.PolledRoutes): their paths are their templates."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    return scope["path"] if scope["path"] in POLLED else None
