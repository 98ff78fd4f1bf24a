"""Every error the HTTP API answers is a problem detail (RFC 9457), one shape everywhere:
`type`, `title`, `status`, `detail`, and `errors` where a body had several problems, sent as
application/problem+json. The detail names what is wrong and how to fix it, and never repeats
a value sent (it may be a secret). The health routes keep their own formats (health.py).

/openapi.json says the same: each route lists every problem it can answer with, each as
problem+json of the `Problem` schema."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import Scope

from daemon.errors import SYNC_REFUSED, Conflict, Gone, NotFound, Unavailable
from daemon.ops.imports import ImportRefused
from daemon.service.access_log import template
from daemon.service.refusals import refusal
from daemon.specs import SpecError
from daemon.store.errors import DatabaseBusy, DatabaseUnavailable, StoreError
from daemon.sync.engine import SyncRefused

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
# FastAPI answers 400 to a body it cannot decode at all (not UTF-8, nested too deeply).
UNREADABLE = "the body could not be read: send JSON, as UTF-8 text"
INTERNAL = "the daemon failed to answer: the reason is in its log"

log = structlog.get_logger("mls_sync.api")

# Another process kept the database's write lock past the busy timeout (a command on this
# machine, the sqlite3 shell): the write was not made, and a moment later it can be.
DATABASE_BUSY = (
    "the database is busy with another writer (a command on this machine, or another "
    "process): nothing was changed; try again in a moment"
)


# The database server cannot be reached (PostgreSQL stopped or restarting), or none of the
# pool's connections came free in time: the request was not served, and soon it can be.
DATABASE_UNAVAILABLE = (
    "the database cannot be reached, or had no connection free in time: nothing was "
    "changed; send again in a moment (/readyz says whether it is reachable)"
)
# Retry-After for each: a lock is usually let go within a second, a server takes longer.
BUSY_RETRY_SECONDS = 1
UNAVAILABLE_RETRY_SECONDS = 5


def database_problem(
    exc: StoreError, scope: Scope, route: str | None = None
) -> JSONResponse | None:
    """503 with Retry-After for a database error that is no fault of the request (busy, or
    unreachable), logged as a warning; None for any other, which is the daemon's own.
    `route`: the route's template, where the request was not routed yet (a middleware)."""
    if isinstance(exc, DatabaseBusy):
        name, detail, retry = "database_busy", DATABASE_BUSY, BUSY_RETRY_SECONDS
    elif isinstance(exc, DatabaseUnavailable):
        name, detail, retry = (
            "database_unavailable",
            DATABASE_UNAVAILABLE,
            UNAVAILABLE_RETRY_SECONDS,
        )
    else:
        return None
    route = route or template(scope)
    log.warning(name, method=scope.get("method"), route=route, error=str(exc))
    return problem(503, detail, headers={"Retry-After": str(retry)})


class UnsupportedBody(SpecError):
    """A body in a form the route does not read (415)."""


class RowError(BaseModel):
    line: int
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[RowError] | None = None


def problem(
    status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body.update(detail=detail, **extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route can answer with (the schema is added to the
    document by `document_problems`)."""
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
        }
        for code in codes
    }


# What any /v1 route can answer: no or a wrong token, a token without the scope, a body too
# large, the API off (no token configured). `declare_refusals` adds what its parameters and
# body make possible.
PROBLEM_RESPONSES = problem_responses(401, 403, 413, 503)


def declare_refusals(router: APIRouter) -> None:
    """Adds to each route of `router` the refusals its inputs make possible: 422 where it
    reads a parameter or a JSON body, and 400 and 415 where it reads a JSON body."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        codes = [400, 415] if route.body_field is not None else []
        if route.body_field is not None or get_flat_params(route.dependant):
            codes.append(422)
        route.responses = {**problem_responses(*codes), **route.responses}


def document_problems(app: FastAPI) -> None:
    """/openapi.json with the `Problem` schema every error answer refers to, without FastAPI's
    own validation error schemas (its 422 repeats input; ours does not), and each route's
    answers in the order of their codes."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document["components"].setdefault("schemas", {})
            for unused in ("ValidationError", "HTTPValidationError"):
                schemas.pop(unused, None)
            problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(problem_schema.pop("$defs", {}))
            schemas["Problem"] = problem_schema
            for methods in document["paths"].values():
                for operation in methods.values():
                    operation["responses"] = dict(sorted(operation["responses"].items()))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way


def install(
    app: FastAPI, unreadable_first: Callable[[Request], Awaitable[JSONResponse | None]]
) -> None:
    """Registers the handlers. `unreadable_first(request)` may answer a request whose body
    did not validate before the body is judged (the token check comes first)."""

    @app.exception_handler(RequestValidationError)
    async def unreadable(request: Request, exc: RequestValidationError) -> JSONResponse:
        if (first := await unreadable_first(request)) is not None:
            return first
        status, detail = refusal(request.headers.get("content-type"), exc.errors())
        return problem(status, detail)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # only FastAPI's, for a body it could not decode
            if (first := await unreadable_first(request)) is not None:
                return first
            return problem(400, UNREADABLE)
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(ImportRefused)
    async def refused_import(request: Request, exc: ImportRefused) -> JSONResponse:
        errors = [{"line": p.line, "message": p.message} for p in exc.problems]
        return problem(422, "nothing imported: see errors, one per bad row", errors=errors)

    @app.exception_handler(SpecError)
    async def invalid(request: Request, exc: SpecError) -> JSONResponse:
        return problem(415 if isinstance(exc, UnsupportedBody) else 422, str(exc))

    @app.exception_handler(NotFound)
    async def missing(request: Request, exc: NotFound) -> JSONResponse:
        return problem(404, str(exc.args[0] if exc.args else exc))

    @app.exception_handler(Gone)
    async def gone(request: Request, exc: Gone) -> JSONResponse:
        return problem(410, str(exc))

    @app.exception_handler(SyncRefused)
    async def not_synced(request: Request, exc: SyncRefused) -> JSONResponse:
        return problem(409, str(exc), type=SYNC_REFUSED)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem(409, str(exc))

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        return problem(503, str(exc))

    @app.exception_handler(DatabaseBusy)
    @app.exception_handler(DatabaseUnavailable)
    async def database_not_now(request: Request, exc: StoreError) -> JSONResponse:
        answer = database_problem(exc, request.scope)
        assert answer is not None  # both kinds have one
        return answer

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises it after this answer: Uvicorn logs it, with its traceback.
        return problem(500, INTERNAL)
