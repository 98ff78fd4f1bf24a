"""HTTP clients for the MLS servers: one per server; and what a reload may change of the
HTTP clients made at start, the MLS servers' and the platforms' alike."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import structlog

from daemon.mls.encoded_url import url_of
from daemon.mls.engine_client import EngineClient

log = structlog.get_logger("mls_sync.sync")


def needs_restart(section: str, key: str | None = None) -> None:
    """Says that a reload's `[section] key` (or, without a key, its changes to the section)
    take effect at the next start only."""
    if key is None:
        log.warning(
            "reload_needs_restart",
            section=section,
            note=f"changes to [{section}] take effect at the next start",
        )
        return
    log.warning(
        "reload_needs_restart",
        section=section,
        key=key,
        note=f"[{section}] {key} as set takes effect at the next start",
    )


def within_pools(section: str, wanted: int, pools: int) -> int:
    """A reload's bound on requests in flight, `wanted`, held to `pools`: the size the
    clients' connection pools were made with at start. A request over it would wait inside a
    pool, whose queue costs O(queue x connections); a larger bound waits for a restart."""
    if wanted > pools:
        needs_restart(section, "max_concurrent_requests")
    return min(wanted, pools)


class ServerPools:
    """One httpx client, and so one connection pool, per MLS server (scheme, host, port).

    httpcore checks every idle connection of a pool on each request and each response (a
    system call or two apiece): profiled, with one pool of 64 connections shared by all
    servers, that scan was up to half of an incremental cycle's CPU. A pool per server holds
    only that server's connections and keeps at most MLS_KEEP_IDLE of them idle (see
    composition.http_client), while each server still gets its own keep-alive connections
    (no TLS handshake per request). On the aiohttp engine, which has no such scan, a pool
    keeps up to its size idle, for a few seconds."""

    def __init__(self, make: Callable[[], EngineClient]) -> None:
        self._make = make
        self._clients: dict[tuple[str, str, int | None], EngineClient] = {}
        self._by_url: dict[str, EngineClient] = {}  # each connection asks every run
        self._timeout: httpx.Timeout | None = None  # a reload's, over the one made with

    def retime(self, seconds: float) -> None:
        """A reload's `[mls] timeout_seconds`: the clients made already, and those made from
        now on, wait that long from their next request (a request out keeps its own)."""
        self._timeout = httpx.Timeout(seconds)
        for client in self._clients.values():
            client.timeout = self._timeout

    def for_url(self, url: str) -> EngineClient:
        client = self._by_url.get(url)
        if client is None:
            parsed = url_of(url)
            origin = (parsed.scheme, parsed.host, parsed.port)
            if origin not in self._clients:
                self._clients[origin] = self._make()
                if self._timeout is not None:
                    self._clients[origin].timeout = self._timeout
            client = self._by_url[url] = self._clients[origin]
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        self._by_url.clear()

    async def __aenter__(self) -> ServerPools:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
