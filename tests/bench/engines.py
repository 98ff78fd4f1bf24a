"""Scenario J: the HTTP engine under httpx, side by side (issue 16: a client should cost no
more than the server it talks to).

Scenario A's by_key cycle (connections of 100 listings, 1% moved before each measured cycle),
once for each engine: httpcore (httpx's own), the httpx-aiohttp package's transport, and the
shipped aiohttp transport (daemon/aiohttp_transport.py). The figure that matters is the
daemon's CPU over the sandbox server's CPU for the same requests, in the same run: a ratio,
so it holds on slow and fast machines alike. Target: <= 1.5. Each row's is the median of
its cycles' ratios, with their range. Then the shipped engine once more with the cycle and
the server sharing one processor (`ONE_CPU`): the steady figure to compare versions by.

Then the floor: the same requests with nothing of the sync around them, on the shipped
engine (tests/bench/bare_requests.py): through the daemon's HTTP client alone, and through
its MLS client (pace, bounds, retries, each page read). What a cycle costs beyond that is
the sync's own work (reading the store, planning and writing each listing), which no engine
changes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.bench.bench import (
    Sizes,
    cpu_over_sandbox,
    markdown_table,
    measured_process,
    median_run,
    move,
    prepared,
    ratios_shown,
    strategy_cycles,
    walls_shown,
)
from tests.bench.cycle import ENGINES, HTTPX_AIOHTTP

BY_KEY: dict[str, Any] = {"key_filter": "in", "batch_size": 50}


# Scenario J's floor (tests/bench/bare_requests.py): the cycle's requests with nothing of
# the sync around them, on the shipped engine, through what of the daemon each row says.
FLOORS = (("aiohttp: the requests alone", "httpx"), ("aiohttp: the MLS client's", "client"))


# The shipped engine's cycles again, with the cycle and the sandbox server on one processor:
# their ratio is then steady from run to run, where on two processors each side's slow spells
# move it (docs/benchmarks.md "The ratio's noise").
ONE_CPU = "aiohttp, one CPU"


def scenario_j(sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    sizes = replace(sizes, repeats=sizes.j_repeats)
    rows = []
    for engine in ("httpcore", HTTPX_AIOHTTP, *[e for e in ENGINES if e != "httpcore"]):
        row = strategy_cycles(sizes.feeds, sizes, work, BY_KEY, engine=engine)
        rows.append(_row(engine, row))
    row = strategy_cycles(sizes.feeds, sizes, work, BY_KEY, engine="aiohttp", one_cpu=True)
    rows.append(_row(ONE_CPU, row))
    for name, through in FLOORS:
        rows.append(_row(name, requests_alone(sizes, work, through)))
    return rows


def _row(engine: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "engine": engine,
        **row,
        "cpu_over_sandbox": cpu_over_sandbox(row),
        "cpu_ms_per_request": round(row["cpu_seconds"] / row["mls_requests"] * 1000, 3),
    }


def requests_alone(sizes: Sizes, work: Path, through: str) -> dict[str, Any]:
    """Scenario A's by_key requests, `through` the daemon's HTTP client or its MLS client
    (tests/bench/bare_requests.py), against a database prepared as for the cycles: a first
    run unmeasured, as the first cycle is, then `sizes.repeats` measured ones, each after 1%
    of the listings moved (the sandbox keeps each query's result until a listing changes:
    the same queries again would cost it only their HTTP). The run of median wall time, with
    the sandbox's CPU during it."""
    runs = []
    # Its own first run stands for the first cycle.
    with prepared(sizes.feeds, sizes.per_feed, work, BY_KEY, first_cycle=False) as (
        server,
        config,
        key,
    ):
        args = ["--config", str(config), "--through", through]
        for n in range(sizes.repeats + 1):
            move(server.mls, sizes.feeds * sizes.per_feed // 100)
            before = server.usage()
            figures = measured_process("tests.bench.bare_requests", args, config, key)
            figures.update(server.spent_since(before))
            if n:
                runs.append(figures)
    return median_run(runs, ratios=True)


def render_j(rows: list[dict[str, Any]]) -> str:
    columns = [
        "engine",
        "requests",
        "wall s: median (runs)",
        "daemon CPU s",
        "of it, event loop",
        "of it, kernel",
        "CPU ms per request",
        "sandbox CPU s",
        "of it, kernel",
        "daemon CPU / sandbox CPU: median of the runs (range)",
        "errors",
    ]
    keys = [
        "cpu_seconds",
        "loop_thread_cpu_seconds",
        "kernel_seconds",
        "cpu_ms_per_request",
        "sandbox_cpu_seconds",
        "sandbox_kernel_seconds",
    ]
    table = [
        [
            r["engine"],
            f"{r['mls_requests']:,}",
            walls_shown(r),
            *[r.get(k, "-") for k in keys],
            ratios_shown(r),
            r.get("errors", "-"),
        ]
        for r in rows
    ]
    return "\n".join(markdown_table(columns, table))
