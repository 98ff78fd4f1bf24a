"""httpx's API on aiohttp's engine: an `httpx.AsyncBaseTransport` that sends each request with
an aiohttp session.

The daemon speaks httpx everywhere (its requests, answers, errors and timeouts); only the
engine underneath changes. aiohttp parses HTTP in C, where httpcore's parser and pool are
pure Python: less CPU per MLS request (docs/benchmarks.md "The HTTP engine"). aiohttp's
errors come back as httpx's, each with aiohttp's error as its cause, so the words an
operator reads (daemon/mls/transport.py) are the same on both engines.

Kept as httpx's own pool was: no cookies (daemon/cookieless.py says why), no
redirects followed, no proxy from the environment; the URL is sent exactly as httpx built it.
A request's `trace` extension is awaited when its connection is open and its headers are
about to be written, under httpcore's name for that step, as httpcore awaits it: an MLS
credential's pace spaces that moment (daemon/pace.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import yarl

from daemon.pace import HEADERS_GOING_OUT
from daemon.tls import verifying_context

KEEP_IDLE_SECONDS = 5.0


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (and pool) per transport, opened at the first request (it needs the
    running event loop) and closed with the client."""

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max_connections
        self._ssl = verifying_context()  # as httpx verifies for the other clients
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    ssl=self._ssl,
                    # httpx's own idle time: the longer a connection idles, the likelier the
                    # server has closed it, and aiohttp then sends the request again itself.
                    keepalive_timeout=KEEP_IDLE_SECONDS,
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,  # httpx decodes, as it does on its own engine
                skip_auto_headers=("User-Agent", "Accept-Encoding"),  # httpx's are sent
                trace_configs=[_going_out_trace()],
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        try:
            async with session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=[
                    (name, value)
                    for name, value in request.headers.multi_items()
                    if name.lower() != "transfer-encoding"  # the body is sent whole
                ],
                data=body or None,
                allow_redirects=False,
                trace_request_ctx={"trace": request.extensions.get("trace")},
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeouts.get("pool"),
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
            ) as answer:
                content = await answer.read()
        except aiohttp.ClientError as exc:
            raise as_httpx_error(exc, request) from exc
        except TimeoutError as exc:  # a timeout aiohttp did not wrap
            raise httpx.ReadTimeout("timed out", request=request) from exc
        extensions = {"http_version": b"HTTP/1.1"}
        if answer.reason:
            extensions["reason_phrase"] = answer.reason.encode("ascii", "replace")
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            content=content,
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _going_out_trace() -> aiohttp.TraceConfig:
    """aiohttp awaits its "request headers sent" signal just before it writes a request's
    headers, once its connection is open, as httpcore awaits `send_request_headers.started`:
    the request's httpx `trace` is awaited there. A request aiohttp sends again itself (its
    idle connection had been closed) is written again, and spaced again: the server counts
    it again. No aiohttp timeout covers the wait, and a failure in it closes the connection."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_headers_going_out)
    return config


async def _headers_going_out(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
) -> None:
    trace = context.trace_request_ctx["trace"]
    if trace is not None:
        await trace(HEADERS_GOING_OUT, {})


def as_httpx_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that httpx's own engine raises for the same failure. Its message names
    the failure only: aiohttp's own messages carry the URL and, for a failed connection,
    "ssl:default", which would read as a TLS error (daemon/mls/transport.py)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout("timed out connecting", request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout("timed out waiting for the answer", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS: the cause says which
        cause = exc.os_error
        return httpx.ConnectError(str(cause) or type(cause).__name__, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError("the server broke off the answer", request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol("not an http or https URL", request=request)
    return httpx.ReadError(type(exc).__name__, request=request)  # a payload cut short, a reset
