"""Who is calling /v1: a bearer token, and whether its scope covers the route's.

A token is one made with `mls-sync tokens create` (read, write or admin), or the one
configured in MLS_SYNC_API_TOKEN or $CREDENTIALS_DIRECTORY/api-token (admin, compared in
constant time). Each request looks its token up (one indexed read): nothing is cached, so a
revoked token is refused from the next request on. The answers: 503 when no token could be
accepted (the API is off), 401 without a token or with a wrong or revoked one, 403 naming the
scope needed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from daemon.credentials import API_TOKEN_CREDENTIAL, API_TOKEN_ENV, Secret
from daemon.ops import tokens
from daemon.ops.tokens import Caller
from daemon.scopes import Scope, allows, needs, widest
from daemon.service.state import ServiceState
from daemon.store.database import Database

__all__ = ["Caller"]  # admin.py takes it from here

API_OFF = (
    f"the /v1 API is off: no API token is configured (set {API_TOKEN_ENV} or "
    f"$CREDENTIALS_DIRECTORY/{API_TOKEN_CREDENTIAL}, or create one with `mls-sync tokens create`)"
)
WRONG_TOKEN = "missing or wrong bearer token"  # noqa: S105 - an answer, not a secret

# Parses `Authorization: Bearer ...` (None when absent or another scheme) and declares the
# `bearer` scheme in the OpenAPI document of every route that requires a scope.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token: one made with `mls-sync tokens create NAME --scope "
    "read|write|admin`, or the configured one (admin).",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def service_state(request: Request) -> ServiceState:
    """The daemon's state, as build_app left it on the app."""
    state: ServiceState = request.app.state.service
    return state


class TokenCheck:
    """The tokens the daemon's database and its configured token accept. build_app puts one
    on `app.state.tokens`, where each route's `Requirement` finds it."""

    def __init__(self, db: Database, configured: Secret | None) -> None:
        self.db = db  # the writing connection: a token's last use is written (once a minute)
        self.configured = configured

    async def caller(self, presented: str | None, needed: Scope) -> Caller:
        """The caller a token is, if its scope covers `needed`; else the HTTPException."""
        caller = await tokens.authenticate(self.db, self.configured, presented or "")
        if caller is None:
            if not await tokens.api_is_on(self.db, self.configured):
                raise HTTPException(503, API_OFF)
            raise HTTPException(401, WRONG_TOKEN, headers={"WWW-Authenticate": "Bearer"})
        if not allows(caller.scope, needed):
            raise HTTPException(403, needs(needed))
        return caller

    async def refusal(self, request: Request) -> HTTPException | None:
        """Why this request may not reach its route, or None: for an error answered before
        the route's dependencies run (FastAPI decodes a JSON body first), so that a caller
        without the right token hears about that, and nothing about the body."""
        needed = needed_scope(request)
        if needed is None:
            return None
        credentials = await BEARER(request)
        try:
            await self.caller(credentials.credentials if credentials else None, needed)
        except HTTPException as refused:
            return refused
        return None


class Requirement:
    """A route's (or a router's) dependency on a scope; it gives the route the Caller, for
    its audit line. A class, so that `needed_scope` can find it on a route."""

    def __init__(self, needed: Scope) -> None:
        self.needed = needed

    async def __call__(self, request: Request, credentials: Credentials) -> Caller:
        check: TokenCheck = request.app.state.tokens
        return await check.caller(credentials.credentials if credentials else None, self.needed)


def require(needed: Scope) -> Requirement:
    return Requirement(needed)


# What a route declares: `who: Reader` (or `dependencies=[Depends(require(...))]`).
Reader = Annotated[Caller, Depends(require(Scope.READ))]
Writer = Annotated[Caller, Depends(require(Scope.WRITE))]
Admin = Annotated[Caller, Depends(require(Scope.ADMIN))]


def needed_scope(request: Request) -> Scope | None:
    """The widest scope the matched route requires (itself or through its router), or None
    when it requires none or no route matched."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    return widest(_requirements(dependant)) if isinstance(dependant, Dependant) else None


def _requirements(dependant: Dependant) -> list[Scope]:
    out = [dependant.call.needed] if isinstance(dependant.call, Requirement) else []
    for sub in dependant.dependencies:
        out.extend(_requirements(sub))
    return out
