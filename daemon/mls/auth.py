"""Bearer tokens for RESO servers: a static token, or OAuth2 client credentials.

A client-credentials token is cached and fetched again shortly before it expires; after a 401
the caller invalidates it and tries once more with a fresh one. A token request is a request to
the MLS like any other: it waits for the `slot` the caller gives (its credential's rate, the
global bound), since a vendor counts it against the same limit.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx

from daemon import foreign_json
from daemon.mls.errors import NeedsReauth, TokenUnavailable
from daemon.mls.transport import answer_summary, transport_cause

# Refresh this long before the server's stated expiry, so a token never expires in flight.
REFRESH_MARGIN_SECONDS = 60.0
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600.0


# A request's httpx extensions: its `trace`, which spaces the moment it goes out
# (daemon/pace.py).
Extensions = dict[str, Any]
# Entered around each request to the server: the credential's turn, a global slot; it gives
# the extensions to send the request with.
Slot = Callable[[], AbstractAsyncContextManager[Extensions]]


class TokenSource(Protocol):
    async def token(self, client: httpx.AsyncClient, slot: Slot) -> str: ...

    def invalidate(self) -> None: ...


@dataclass
class StaticToken:
    value: str

    async def token(self, client: httpx.AsyncClient, slot: Slot) -> str:
        return self.value

    def invalidate(self) -> None:
        """A static token cannot be renewed; the retry simply uses it again."""


class ClientCredentials:
    def __init__(
        self, token_url: str, client_id: str, client_secret: str, scope: str | None
    ) -> None:
        self._url = token_url
        self._form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        if scope:
            self._form["scope"] = scope
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = anyio.Lock()  # one refresh at a time, whatever the number of callers

    async def token(self, client: httpx.AsyncClient, slot: Slot) -> str:
        async with self._lock:
            if self._token is None or anyio.current_time() >= self._expires_at:
                async with slot() as extensions:
                    await self._fetch(client, extensions)
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        self._token = None

    async def _fetch(self, client: httpx.AsyncClient, extensions: Extensions) -> None:
        try:
            resp = await client.post(self._url, data=self._form, extensions=extensions)
        except httpx.TransportError as exc:
            raise TokenUnavailable(f"token endpoint {self._url}: {transport_cause(exc)}") from None
        if resp.status_code in (400, 401, 403):
            raise NeedsReauth(
                f"the token endpoint {self._url} refused the client credentials "
                f"({answer_summary(resp)}); update the connection's client id and secret"
            )
        if not 200 <= resp.status_code < 300:
            # A 404 or a 5xx HTML page: the URL or the server is wrong, not the credentials.
            raise TokenUnavailable(f"token endpoint {self._url}: {answer_summary(resp)}")
        try:
            body = foreign_json.loads(resp.content)
            token = body["access_token"]
            lifetime = float(body.get("expires_in", DEFAULT_TOKEN_LIFETIME_SECONDS))
        except (ValueError, KeyError, TypeError):
            raise TokenUnavailable(
                f"token endpoint {self._url}: a success answer without a readable access_token"
            ) from None
        if not isinstance(token, str) or not token:
            raise TokenUnavailable(
                f"token endpoint {self._url}: a success answer without an access_token"
            )
        self._token = token
        margin = min(REFRESH_MARGIN_SECONDS, lifetime / 10)
        self._expires_at = anyio.current_time() + max(lifetime - margin, 0.0)
