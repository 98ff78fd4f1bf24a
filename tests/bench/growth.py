"""Scenario I: how a cycle's cost grows with the listings tracked (issue 16's "up").

The same cycles as scenario A (connections of 100 listings, each its own feed and credential,
1% moved before each measured cycle), by_key and incremental, at each size of
`Sizes.i_listings`: wall time, the daemon's CPU and peak RSS, and the sandbox's CPU, so the
growth curve shows beside the work the server did for the same requests.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.bench.bench import Sizes, cpu_over_sandbox, markdown_table, strategy_cycles

FETCHES = {
    "by_key": {"key_filter": "in", "batch_size": 50},
    "incremental": {"mode": "incremental", "overlap_seconds": 0},
}


def scenario_i(sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    rows = []
    for listings in sizes.i_listings:
        feeds = listings // sizes.per_feed
        # One measured cycle at each size: the curve spans 100x, far beyond a run's noise.
        at_size = replace(sizes, repeats=1)
        for fetch, connection in FETCHES.items():
            started = time.perf_counter()
            print(f"scenario I: {fetch} at {listings:,} listings...", file=sys.stderr, flush=True)
            row = strategy_cycles(feeds, at_size, work, connection)
            print(
                f"scenario I: {fetch} at {listings:,} done in "
                f"{time.perf_counter() - started:.0f} s (set-up included)",
                file=sys.stderr,
                flush=True,
            )
            rows.append({"fetch": fetch, **row})
    return with_growth(rows)


def with_growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's CPU per 1,000 listings and its CPU over the sandbox's, and how its CPU
    compares with the same fetch at the smallest size, scaled by listings (1.0 = linear)."""
    smallest: dict[str, dict[str, Any]] = {}
    out = []
    for row in rows:
        base = smallest.setdefault(row["fetch"], row)
        scale = row["listings"] / base["listings"]
        out.append(
            {
                **row,
                "cpu_ms_per_1000_listings": round(row["cpu_seconds"] / row["listings"] * 1e6, 1),
                "cpu_over_sandbox": cpu_over_sandbox(row),
                "cpu_growth_over_linear": round(
                    row["cpu_seconds"] / max(base["cpu_seconds"], 0.001) / scale, 2
                ),
            }
        )
    return out


def render_i(rows: list[dict[str, Any]]) -> str:
    columns = [
        "fetch",
        "listings",
        "MLS requests",
        "wall s",
        "daemon CPU s",
        "CPU ms per 1,000 listings",
        "growth over linear",
        "peak RSS MB",
        "sandbox CPU s",
        "daemon CPU / sandbox CPU",
    ]
    keys = [
        "wall_seconds",
        "cpu_seconds",
        "cpu_ms_per_1000_listings",
        "cpu_growth_over_linear",
        "peak_rss_mb",
        "sandbox_cpu_seconds",
        "cpu_over_sandbox",
    ]
    table = [
        [r["fetch"], f"{r['listings']:,}", f"{r['mls_requests']:,}", *[r[k] for k in keys]]
        for r in rows
    ]
    return "\n".join(markdown_table(columns, table))
