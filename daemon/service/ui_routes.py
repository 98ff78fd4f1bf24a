"""The status page (docs/status-page.md): read-only HTML at /ui, beside /status.

Every page reads through the operations the /v1 API uses, on the status board's read-only
connection (beside the sync's writes, never queued behind them), and changes nothing. On a
loopback address the page is open as /status is; on any other it asks for an API token once
(daemon/ui/access.py).
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.staticfiles import StaticFiles

from daemon.enums import AccountState, ConnectionState, PostStatus
from daemon.errors import Conflict, Gone, NotFound, Unavailable
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.queries import (
    AccountQuery,
    ConnectionQuery,
    ListingQuery,
    PostQuery,
    RunQuery,
)
from daemon.scopes import Scope
from daemon.service.auth import TokenCheck
from daemon.service.health import progress
from daemon.service.state import ServiceState
from daemon.specs import SpecError
from daemon.timestamps import iso, utcnow
from daemon.ui import access, chart
from daemon.ui.render import duration_seconds, render

PAGE = 50  # rows per page of a list
RUNS = 50  # runs in the overview's charts
RECENT_EVENTS = 50
DELIVERIES = 20  # per webhook endpoint, on the events page
STATIC = Path(__file__).resolve().parent.parent / "ui" / "static"

# No script, style or image from anywhere but the daemon; no inline script; no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a form post says `Origin: null`.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

RUN_MEASURES = (
    chart.Measure("duration", "Duration", "s", lambda r: r["duration_seconds"]),
    chart.Measure("changes", "Status changes", "", lambda r: r["status_changes"]),
    chart.Measure("errors", "Errors", "", lambda r: r["errors"]),
    chart.Measure("requests", "MLS requests", "", lambda r: r["mls_requests"]),
)


def mount_ui(app: FastAPI, state: ServiceState) -> None:
    app.include_router(ui_routes(state))
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


def ui_routes(state: ServiceState) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)
    sessions = access.Sessions()
    daemon = state.settings.daemon
    open_page = daemon.ui_login == "auto" and access.is_loopback(daemon.http_host)

    async def allowed(request: Request) -> bool:
        if open_page:
            return True
        token = sessions.token(request.cookies.get(access.COOKIE))
        if token is None:
            return False
        check: TokenCheck = request.app.state.tokens
        try:
            await check.caller(token, Scope.READ)
        except HTTPException:
            return False  # revoked since, or narrower now: ask again
        return True

    async def page(request: Request, template: str, build: Any) -> Response:
        if not await allowed(request):
            return _to_login(request)
        try:
            context = await build(_operations(state))
        except (NotFound, Gone) as exc:
            return _error(404, str(exc), open_page)
        except Conflict as exc:
            return _error(409, str(exc), open_page)
        except Unavailable as exc:  # the database busy or going away
            return _error(503, str(exc), open_page)
        except SpecError as exc:
            return _error(422, str(exc), open_page)
        except ValidationError as exc:  # a query parameter; named, its value not repeated
            names = sorted({str(e["loc"][-1]) for e in exc.errors() if e["loc"]})
            return _error(422, f"not a valid value: {', '.join(names)}", open_page)
        return _html(render(template, **context, **_chrome(open_page)))

    @router.get("")
    async def overview(request: Request, after: str | None = None) -> Response:
        async def build(ops: Operations) -> dict[str, Any]:
            return await _overview(ops, state, after)

        return await page(request, "overview.html", build)

    @router.get("/connections/{connection_id}")
    async def connection(
        request: Request, connection_id: str, status: str | None = None, after: str | None = None
    ) -> Response:
        async def build(ops: Operations) -> dict[str, Any]:
            found = await ops.connections.get(connection_id)
            query = ListingQuery(
                connection_id=connection_id, status=status, after=after, limit=PAGE
            )
            listings = await ops.listings.list(query)
            counts = await ops.connections.listings_by_status([connection_id])
            return {
                "connection": found,
                "listings": listings,
                "status": status,
                "counts": counts[connection_id],
            }

        return await page(request, "connection.html", build)

    @router.get("/listings/{listing_id}")
    async def listing(request: Request, listing_id: str) -> Response:
        async def build(ops: Operations) -> dict[str, Any]:
            found = await ops.listings.get(listing_id)
            posts = await ops.posts.list(PostQuery(listing_id=listing_id, limit=PAGE))
            return {"listing": found, "posts": posts}

        return await page(request, "listing.html", build)

    @router.get("/needs-person")
    async def needs_person(request: Request, after: str | None = None) -> Response:
        async def build(ops: Operations) -> dict[str, Any]:
            posts = await ops.posts.list(
                PostQuery(status=PostStatus.MANUAL_REQUIRED, after=after, limit=PAGE)
            )
            accounts = await ops.accounts.list(
                AccountQuery(state=AccountState.NEEDS_REAUTH, limit=PAGE)
            )
            connections = await ops.connections.list(
                ConnectionQuery(state=ConnectionState.NEEDS_REAUTH, limit=PAGE)
            )
            endpoints = [_endpoint_shown(e) for e in await ops.webhooks.list() if not e["enabled"]]
            return {
                "posts": posts,
                "accounts": accounts,
                "connections": connections,
                "endpoints": endpoints,
            }

        return await page(request, "needs_person.html", build)

    @router.get("/events")
    async def events(request: Request) -> Response:
        async def build(ops: Operations) -> dict[str, Any]:
            endpoints = [
                {**_endpoint_shown(e), "deliveries": await ops.webhooks.recent(e["id"], DELIVERIES)}
                for e in await ops.webhooks.list()
            ]
            return {"events": await ops.events.recent(RECENT_EVENTS), "endpoints": endpoints}

        return await page(request, "events.html", build)

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        form = render("login.html", failed=False, next=_next(request), **_chrome(True, False))
        return _html(form)

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not _same_site(request):
            return _error(403, "a login must come from this page's own form", open_page)
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0]
        target = _local((form.get("next") or ["/ui"])[0])
        check: TokenCheck = request.app.state.tokens
        try:
            await check.caller(token, Scope.READ)
        except HTTPException:
            # The token is never shown back, not even in the form.
            body = render("login.html", failed=True, next=target, **_chrome(True, False))
            return _html(body, status=401)
        answer = RedirectResponse(target, status_code=303)
        answer.set_cookie(
            access.COOKIE,
            sessions.open(token),
            max_age=access.SESSION_SECONDS,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return answer

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        if not _same_site(request):
            return _error(403, "a logout must come from this page's own button", open_page)
        sessions.close(request.cookies.get(access.COOKIE))
        answer = RedirectResponse("/ui/login", status_code=303)
        answer.delete_cookie(access.COOKIE, path="/ui")
        return answer

    return router


def _operations(state: ServiceState) -> Operations:
    """Reads beside the sync's writes (the board's read-only connection); no secret box: the
    page decrypts nothing."""
    return Operations.on(OpsContext(state.board.reader, None, actor="ui"))


async def _overview(ops: Operations, state: ServiceState, after: str | None) -> dict[str, Any]:
    connections = await ops.connections.list(ConnectionQuery(after=after, limit=PAGE))
    ids = [c["id"] for c in connections.items]
    counts = await ops.connections.listings_by_status(ids)
    # As the alerts read it (mls_sync_connection_last_success_timestamp_seconds), measured
    # after each cycle: no query of the run history per page.
    health = state.metrics.cycle_health
    last_read = {
        c: iso(datetime.fromtimestamp(at, UTC)) if at else None
        for c, at in (health.connection_last_read_at if health else {}).items()
    }
    now = utcnow()
    runs = [
        {**r, "duration_seconds": duration_seconds(r["started_at"], r["finished_at"], now)}
        for r in (await ops.runs.list(RunQuery(limit=RUNS))).items
    ]
    snapshot = await state.board.current()
    running = state.coordinator.running
    next_run = state.scheduler.next_run()
    return {
        "connections": connections,
        "counts": counts,
        "last_read": last_read,
        "runs": runs,
        "charts": chart.charts(runs, RUN_MEASURES),
        "listings_by_status": snapshot.listings_by_status,
        "posts_by_status": snapshot.posts_by_status,
        "running": progress(running) if running is not None else None,
        "next_run": next_run.isoformat() if next_run else None,
        "version": state.version,
        "sandbox": state.sandbox is not None,
    }


NAV = (("/ui", "Overview"), ("/ui/needs-person", "Needs a person"), ("/ui/events", "Events"))


def _chrome(open_page: bool, refresh: bool = True) -> dict[str, Any]:
    """What every page's frame shows: the links, a way out where one logged in, and the
    auto-refresh box where there is something to refresh (not on a form or an error)."""
    return {"nav": NAV, "can_log_out": not open_page, "refresh": refresh}


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _error(status: int, message: str, open_page: bool) -> HTMLResponse:
    body = render("error.html", status=status, message=message, **_chrome(open_page, False))
    return _html(body, status)


def _to_login(request: Request) -> RedirectResponse:
    asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = urllib.parse.quote(_local(asked), safe="")
    return RedirectResponse(f"/ui/login?next={target}", status_code=303)


def _next(request: Request) -> str:
    return _local(request.query_params.get("next", "/ui"))


def _local(path: str) -> str:
    """Only a page of this site: a login never sends a browser elsewhere."""
    return path if path.startswith("/ui") and not path.startswith("//") else "/ui"


def _same_site(request: Request) -> bool:
    """A form post from this page, not another site's: the browser says where a request
    comes from (Sec-Fetch-Site), whatever a reverse proxy makes of the Host. SameSite=Strict
    keeps the cookie from other sites; this keeps their forms out too."""
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def _endpoint_shown(endpoint: dict[str, Any]) -> dict[str, Any]:
    """An endpoint as the page shows it: where it delivers, not its URL, whose path or query
    may hold a token of the receiver's (the API shows it to admin tokens only)."""
    return {
        "id": endpoint["id"],
        "origin": _origin(str(endpoint["url"])),
        "enabled": endpoint["enabled"],
        "disabled_reason": endpoint.get("disabled_reason"),
        "cursor": endpoint["cursor"],
    }


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
