"""One HTTP attempt of a delivery: the body and headers sent, the answer reduced to what is
recorded (status, latency, error, a short excerpt). Never raises for the receiver's doing."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from daemon.foreign_text import storable
from daemon.outbound.urls import UrlPolicy, address_refusal, check_url, refused_address
from daemon.specs import SpecError

if TYPE_CHECKING:
    # Imported where a session is made (`client`): aiohttp is about a sixth of a command's
    # start-up, and the commands that manage endpoints send nothing.
    import aiohttp

EXCERPT_CHARS = 256
USER_AGENT = "mls-sync-webhooks/0.1"


@dataclass(frozen=True)
class Sent:
    status_code: int | None  # None: no answer
    latency_ms: int
    error: str | None
    excerpt: str | None
    retry_after: str | None = None


def client(timeout_seconds: float, max_in_flight: int) -> aiohttp.ClientSession:
    """Redirects are not followed (a 3xx is a failure: `send` asks for none), nothing from
    the environment (proxies) reroutes a delivery, and no receiver's cookie is kept. aiohttp,
    not httpx: a delivery's round trip is most of the worker's CPU, and aiohttp's costs a
    fraction of httpx's (docs/benchmarks.md, scenario D)."""
    import aiohttp

    return aiohttp.ClientSession(
        # No DNS cache of its own: a name resolves as `refusal` just checked it, not as it
        # did up to 10 s before.
        connector=aiohttp.TCPConnector(limit=max_in_flight, use_dns_cache=False),
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=False,
        headers={"User-Agent": USER_AGENT},
    )


async def send(
    http: aiohttp.ClientSession,
    url: str,
    body: str,
    headers: dict[str, str],
    policy: UrlPolicy,
    timeout_seconds: float,
    checked: bool = False,
) -> Sent:
    """`checked`: the caller has just checked the URL (`refusal`) for a run of deliveries.
    The client's timeout bounds the whole exchange, not each read."""
    import aiohttp  # loaded already: the session was made with it (`client`)

    started = time.monotonic()
    if not checked and (refused := await refusal(url, policy)) is not None:
        return Sent(None, 0, refused, None)
    try:
        async with http.post(
            url,
            data=body.encode("utf-8"),
            headers={**headers, "Content-Type": "application/json"},
            allow_redirects=False,
        ) as answer:
            taken = await _excerpt(answer)
    except TimeoutError:
        return Sent(None, _ms(started), f"no answer within {timeout_seconds:g} s", None)
    except (aiohttp.ClientError, ValueError, UnicodeError, OSError) as exc:
        # The class only: aiohttp's messages may quote the URL.
        return Sent(None, _ms(started), f"no answer: {type(exc).__name__}", None)
    status = answer.status
    excerpt = storable(taken.decode("utf-8", errors="replace"), EXCERPT_CHARS)
    return Sent(status, _ms(started), _error(status), excerpt, answer.headers.get("Retry-After"))


async def _excerpt(answer: aiohttp.ClientResponse) -> bytes:
    """The first characters of the answer; the rest is not even read."""
    taken = b""
    while len(taken) < EXCERPT_CHARS * 4 and not answer.content.at_eof():
        taken += await answer.content.read(EXCERPT_CHARS * 4 - len(taken))
    return taken


def _error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"answered {status}: redirects are not followed"
    return f"answered {status}"


async def refusal(url: str, policy: UrlPolicy) -> str | None:
    """The URL is checked again under the rules in effect now (they may have changed since
    the endpoint was made), and a host name is resolved and each of its addresses checked as
    an address in the URL would have been: a name must not lead where an address may not."""
    try:
        check_url(url, policy)
    except SpecError as exc:
        return "refused: " + str(exc).removeprefix("url: ")
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
        return None  # an address: checked just now
    except ValueError:
        pass
    try:
        found = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return "the endpoint's host name does not resolve"
    for *_, sockaddr in found:
        why = refused_address(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), policy)
        if why is not None:
            return "refused: " + address_refusal(why).removeprefix("url: ")
    return None


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
