"""An MLS server's HTTP client, which hands each of its GETs straight to its engine.

A by_key cycle sends one GET per batch of keys. Through `AsyncClient.get` each one also goes
through the layers of httpx's client that serve features these clients never use: the
client's headers and cookies merged into a new set, an auth flow, a redirect loop, event
hooks, a cookie jar. Those layers cost about as much CPU per request as reading the answer
does (docs/benchmarks.md "The HTTP engine"). `get_now` builds the same request (the client's
headers, its timeout, the extensions) and gives it to the engine the client was made with
(`[mls] http_engine`), as `AsyncClient.send` would; what comes back is httpx's response,
read whole, and a failure is httpx's error, naming its request. Every read of the server
goes this way (pages, change logs, `$metadata`); token requests and the platforms' clients
go through httpx's client.

A redirect comes back as the answer, whatever its Location says: httpx's client, which
does not follow one either, still read the Location, and failed on one it could not parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from daemon.cookieless import CookielessClient


class EngineClient(CookielessClient):
    """A client made with an explicit engine (`transport`), which `get_now` sends to. What
    `get_now` would skip (following redirects, auth, event hooks, mounts, a proxy, default
    query parameters, a base URL) is refused when the client is made, and must not be set
    on it afterwards."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **options: Any) -> None:
        for unsupported in ("auth", "event_hooks", "mounts", "proxy", "params", "base_url"):
            if options.get(unsupported):
                raise ValueError(f"an EngineClient cannot have {unsupported}")
        if options.get("follow_redirects"):
            raise ValueError("an EngineClient never follows redirects")
        super().__init__(transport=transport, **options)
        self.engine = transport
        self._made: dict[tuple[bytes, tuple[tuple[str, str], ...]], httpx.Headers] = {}
        self._made_from: tuple[tuple[bytes, bytes], ...] = ()

    async def get_now(
        self, url: httpx.URL, headers: Mapping[str, str], extensions: Mapping[str, Any]
    ) -> httpx.Response:
        """What `self.get(url, headers=headers, extensions=extensions)` answers, read whole,
        without the client's layers (see the module's docstring). `headers` replace the
        client's own of the same names; a timeout in `extensions` replaces the client's. The
        URL's own user name and password are not sent (a connection's base URL holds none:
        `specs.ConnectionSpec`)."""
        if self.is_closed:
            raise RuntimeError("the MLS server's client is closed")
        request = httpx.Request(
            "GET",
            url,
            headers=self._headers_for(url, headers),
            # No body: given as its (empty) stream, the request is made as it is, where
            # `content` would have httpx work out the headers again (see `_headers_for`).
            stream=_NO_BODY,
            extensions={"timeout": self.timeout.as_dict(), **extensions},
        )
        request.read()  # its empty body, as httpx's own requests have theirs read
        try:
            response = await self.engine.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request  # as the client's own sending names it
            raise
        response.request = request
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    def _headers_for(self, url: httpx.URL, headers: Mapping[str, str]) -> httpx.Headers:
        """The request's headers as `build_request` makes them for a GET: the Host (unless
        one is given), the client's own headers but those `headers` names, then `headers`.
        Made once per server and set of `headers`, which a connection sends alike on each
        of its requests (making them anew, in httpx's Python, was a measurable share of a
        request's CPU: docs/benchmarks.md "The request's headers"), and made again once
        the client's own headers change."""
        own = tuple(self.headers.raw)
        if own != self._made_from:
            self._made.clear()
            self._made_from = own
        key = (url.netloc, tuple(headers.items()))
        made = self._made.get(key)
        if made is None:
            named = {name.lower() for name in headers}
            kept = [(k, v) for k, v in own if k.decode("latin-1").lower() not in named]
            host = (
                []
                if "host" in named or any(k.lower() == b"host" for k, _ in own)
                else [(b"Host", url.netloc)]
            )
            # ASCII, as httpx encodes a header given as text (and refuses one that is not).
            given = [(k.encode("ascii"), v.encode("ascii")) for k, v in headers.items()]
            made = httpx.Headers([*host, *kept, *given])
            if len(self._made) >= _KEPT_HEADERS:  # the oldest goes: a token renewed, say
                del self._made[next(iter(self._made))]
            self._made[key] = made
        return made


# Sets of headers kept per client, one per server and token (and the MLS client's Accept
# and Prefer) it sends with: room for many connections of one server syncing at once, where
# past this many each would make its headers anew on each request, as before.
_KEPT_HEADERS = 256
_NO_BODY = httpx.ByteStream(b"")
