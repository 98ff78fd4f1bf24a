"""One HTTP attempt of a delivery: the body and headers sent, the answer reduced to what is
recorded (status, latency, error, a short excerpt). Never raises for the receiver's doing."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx

from daemon.outbound.urls import UrlPolicy, address_refusal, check_url, refused_address
from daemon.specs import SpecError

EXCERPT_CHARS = 256
USER_AGENT = "mls-sync-webhooks/0.1"


@dataclass(frozen=True)
class Sent:
    status_code: int | None  # None: no answer
    latency_ms: int
    error: str | None
    excerpt: str | None
    retry_after: str | None = None


def client(timeout_seconds: float, max_in_flight: int) -> httpx.AsyncClient:
    """Redirects are not followed (a 3xx is a failure), and nothing from the environment
    (proxies) reroutes a delivery."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds),
        limits=httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=4),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


async def send(
    http: httpx.AsyncClient,
    url: str,
    body: str,
    headers: dict[str, str],
    policy: UrlPolicy,
    timeout_seconds: float,
) -> Sent:
    started = time.monotonic()
    refusal = await _host_refusal(url, policy)
    if refusal is not None:
        return Sent(None, 0, refusal, None)
    try:
        with anyio.fail_after(timeout_seconds):  # the whole exchange, not each read
            async with http.stream(
                "POST",
                url,
                content=body.encode("utf-8"),
                headers={**headers, "Content-Type": "application/json"},
            ) as answer:
                excerpt = await _excerpt(answer)
    except TimeoutError:
        return Sent(None, _ms(started), f"no answer within {timeout_seconds:g} s", None)
    except httpx.TimeoutException:
        return Sent(None, _ms(started), f"no answer within {timeout_seconds:g} s", None)
    except httpx.HTTPError as exc:
        # The class only: httpx's messages may quote the URL.
        return Sent(None, _ms(started), f"no answer: {type(exc).__name__}", None)
    status = answer.status_code
    return Sent(status, _ms(started), _error(status), excerpt, answer.headers.get("Retry-After"))


def _error(status: int) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"answered {status}: redirects are not followed"
    return f"answered {status}"


async def _excerpt(answer: httpx.Response) -> str:
    """The first characters of the answer; the rest is not even read."""
    taken = b""
    async for chunk in answer.aiter_raw():
        taken += chunk
        if len(taken) >= EXCERPT_CHARS * 4:
            break
    return taken.decode("utf-8", errors="replace")[:EXCERPT_CHARS]


async def _host_refusal(url: str, policy: UrlPolicy) -> str | None:
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
