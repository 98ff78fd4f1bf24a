"""Scenario E: the status page's overview (/ui) of scenario A's size, 1,000 connections and
100,000 listings, as `mls-sync run` serves it. A few measured cycles first (runs for the
charts, listings in every status), then the overview asked for one request at a time over
HTTP after the daemon's own cycle at start has ended; each answer's time is the client's,
request sent to body read, on the same two cores. Target: under 200 ms."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from daemon.encryption import generate_key
from tests.bench.bench import Sizes, cycle, move, prepare, sandbox, write_config
from tests.e2e.daemon_process import Daemon
from tests.ports import free_port

REQUESTS = 30


def scenario_e(sizes: Sizes, work: Path) -> dict[str, Any]:
    with sandbox(sizes.feeds, sizes.per_feed) as server:
        folder = Path(tempfile.mkdtemp(dir=work))
        key = generate_key()
        port = free_port()
        config = write_config(
            folder,
            server.platforms,
            daemon={"http_port": port},
            sandbox={"enabled": False},
        )
        prepare(config, key, server.mls, sizes.feeds, sizes.per_feed, key_filter="in")
        for to in ("Pending", "Closed"):
            cycle(config, key, server)
            move(server.mls, sizes.d_events, to)
        daemon = Daemon.start(config, port, key)
        try:
            return anyio.run(_measure, daemon, sizes)
        finally:
            daemon.stop()


async def _measure(daemon: Daemon, sizes: Sizes) -> dict[str, Any]:
    await daemon.wait_notify("READY=1", timeout=120)
    await _idle(daemon)
    seconds, size = [], 0
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
        for _ in range(REQUESTS):
            started = time.perf_counter()
            answer = await client.get("/ui")
            seconds.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.status_code
            size = len(answer.content)
    ordered = sorted(seconds)
    return {
        "connections": sizes.feeds,
        "listings": sizes.feeds * sizes.per_feed,
        "requests": REQUESTS,
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "page_kb": round(size / 1024, 1),
    }


async def _idle(daemon: Daemon) -> None:
    """Until the cycle the daemon runs at start has ended: the page is measured alone."""
    with anyio.fail_after(300):
        while True:
            status = (await daemon.get("/status")).json()
            if status["running"] is None and status["last_runs"]:
                return
            await anyio.sleep(0.5)
