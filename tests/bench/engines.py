"""Scenario J: the HTTP engine under httpx, side by side (issue 16: a client should cost no
more than the server it talks to).

Scenario A's by_key cycle (connections of 100 listings, 1% moved before each measured cycle),
once for each engine: httpcore (httpx's own), the httpx-aiohttp package's transport, and the
shipped aiohttp transport (daemon/aiohttp_transport.py). The figure that matters is the
daemon's CPU over the sandbox server's CPU for the same requests, in the same run: a ratio,
so it holds on slow and fast machines alike. Target: <= 1.5.

Then the floor: the same requests with nothing of the daemon around them, on the shipped
engine (tests/bench/bare_requests.py), alone and with each answer read as the daemon reads
it. What a cycle costs beyond that is the daemon's own work (its plans, its writes, its
reads of the store), which no engine changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.bench.bench import (
    MLS_IN_FLIGHT,
    REPO,
    Sizes,
    cpu_over_sandbox,
    markdown_table,
    median_run,
    move,
    sandbox,
    strategy_cycles,
    walls_shown,
)
from tests.bench.cycle import ENGINES, HTTPX_AIOHTTP

BY_KEY = {"key_filter": "in", "batch_size": 50}


# Scenario J's floor (tests/bench/bare_requests.py): the cycle's requests alone, on the shipped
# engine, as many in flight as the benchmark's daemon sends.
FLOORS = (("aiohttp: the requests alone", False), ("aiohttp: the requests, answers read", True))


def scenario_j(sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    rows = []
    for engine in ("httpcore", HTTPX_AIOHTTP, *[e for e in ENGINES if e != "httpcore"]):
        row = strategy_cycles(sizes.feeds, sizes, work, BY_KEY, engine=engine)
        rows.append(_row(engine, row))
    for name, read in FLOORS:
        rows.append(_row(name, bare_requests(sizes, read)))
    return rows


def _row(engine: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "engine": engine,
        **row,
        "cpu_over_sandbox": cpu_over_sandbox(row),
        "cpu_ms_per_request": round(row["cpu_seconds"] / row["mls_requests"] * 1000, 3),
    }


def bare_requests(sizes: Sizes, read: bool) -> dict[str, Any]:
    """The by_key cycle's requests with nothing of the daemon around them, `sizes.repeats`
    times in a process of their own each, against one sandbox; the run of median wall time,
    with the sandbox's CPU during it. 1% of the listings move before each, as before each
    measured cycle: the sandbox keeps each query's result until a listing changes, and the
    same queries again would cost it only their HTTP."""
    runs = []
    with sandbox(sizes.feeds, sizes.per_feed) as server:
        for _ in range(sizes.repeats):
            move(server.mls, sizes.feeds * sizes.per_feed // 100)
            args = [
                sys.executable,
                "-m",
                "tests.bench.bare_requests",
                "--mls",
                server.mls,
                "--feeds",
                str(sizes.feeds),
                "--per-feed",
                str(sizes.per_feed),
                "--in-flight",
                str(MLS_IN_FLIGHT),
            ]
            if read:
                args.append("--read")
            before = server.cpu_seconds()
            out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=True)  # noqa: S603
            figures = json.loads(out.stdout.splitlines()[-1])
            figures["sandbox_cpu_seconds"] = round(server.cpu_seconds() - before, 3)
            runs.append(figures)
    return median_run(runs)


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
        [r["engine"], f"{r['mls_requests']:,}", walls_shown(r), *[r.get(k, "-") for k in keys]]
        for r in rows
    ]
    return "\n".join(markdown_table(columns, table))
