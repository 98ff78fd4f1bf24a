"""Who is calling /v1: the bearer token, checked in constant time. With no token configured
the API is off and says so."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from daemon.credentials import API_TOKEN_CREDENTIAL, API_TOKEN_ENV
from daemon.service.state import ServiceState

API_OFF = (
    f"the /v1 API is off: no API token is configured (set {API_TOKEN_ENV} or "
    f"$CREDENTIALS_DIRECTORY/{API_TOKEN_CREDENTIAL})"
)
# Declares the scheme in OpenAPI; the check itself is `token_refusal`.
BEARER = HTTPBearer(scheme_name="bearer", auto_error=False)


@dataclass(frozen=True)
class Caller:
    name: str  # the token's name, for the audit log


def token_refusal(state: ServiceState, request: Request) -> HTTPException | None:
    """Why a /v1 request may not go on (no API configured, no or a wrong token), or None."""
    token = state.api_token
    if token is None:
        return HTTPException(503, API_OFF)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8"), token.value.encode("utf-8")
    )
    if not ok:
        return HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return None


def service_state(request: Request) -> ServiceState:
    """The daemon's state, as build_app left it on the app."""
    state: ServiceState = request.app.state.service
    return state


def caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Caller:
    if refused := token_refusal(service_state(request), request):
        raise refused
    return Caller("api-token")
