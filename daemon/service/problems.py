"""Every error the HTTP API answers is a problem detail (RFC 9457), one shape everywhere:
`type`, `title`, `status`, `detail`, and `errors` where a body had several problems. The
detail names what is wrong and how to fix it, and never repeats a value sent (it may be a
secret)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from daemon.errors import Conflict, NotFound, Unavailable
from daemon.ops.imports import ImportRefused
from daemon.service.refusals import refusal
from daemon.specs import SpecError

PROBLEM_JSON = "application/problem+json"


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
    """OpenAPI entries for the problems a route can answer with."""
    return {
        code: {
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
            "description": HTTPStatus(code).phrase,
        }
        for code in codes
    }


# What any /v1 route can answer: no or a wrong token, a token without the scope, a body too
# large, the API off (no token configured), parameters that do not validate.
PROBLEM_RESPONSES = problem_responses(401, 403, 413, 422, 503)


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

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem(409, str(exc))

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        return problem(503, str(exc))
