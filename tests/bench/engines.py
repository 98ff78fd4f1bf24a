"""Scenario J: the HTTP engine under httpx, side by side (issue 16: a client should cost no
more than the server it talks to).

Scenario A's by_key cycle (connections of 100 listings, 1% moved before each measured cycle),
once for each engine: httpcore (httpx's own), the httpx-aiohttp package's transport, and the
shipped aiohttp transport (daemon/aiohttp_transport.py). The figure that matters is the
daemon's CPU over the sandbox server's CPU for the same requests, in the same run: a ratio,
so it holds on slow and fast machines alike. Target: <= 1.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench.bench import Sizes, cpu_over_sandbox, markdown_table, strategy_cycles, walls_shown
from tests.bench.cycle import ENGINES, HTTPX_AIOHTTP

BY_KEY = {"key_filter": "in", "batch_size": 50}


def scenario_j(sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    rows = []
    for engine in ("httpcore", HTTPX_AIOHTTP, *[e for e in ENGINES if e != "httpcore"]):
        row = strategy_cycles(sizes.feeds, sizes, work, BY_KEY, engine=engine)
        rows.append(
            {
                "engine": engine,
                **row,
                "cpu_over_sandbox": cpu_over_sandbox(row),
                "cpu_ms_per_request": round(row["cpu_seconds"] / row["mls_requests"] * 1000, 3),
            }
        )
    return rows


def render_j(rows: list[dict[str, Any]]) -> str:
    columns = [
        "engine",
        "requests",
        "wall s: median (runs)",
        "daemon CPU s",
        "of it, event loop",
        "CPU ms per request",
        "sandbox CPU s",
        "daemon CPU / sandbox CPU",
        "errors",
    ]
    keys = [
        "cpu_seconds",
        "loop_thread_cpu_seconds",
        "cpu_ms_per_request",
        "sandbox_cpu_seconds",
        "cpu_over_sandbox",
        "errors",
    ]
    table = [
        [r["engine"], f"{r['mls_requests']:,}", walls_shown(r), *[r[k] for k in keys]] for r in rows
    ]
    return "\n".join(markdown_table(columns, table))
