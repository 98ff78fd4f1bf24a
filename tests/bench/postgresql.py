"""Scenario K: scenario A's cycles on PostgreSQL beside SQLite, same machine, same run, and
on PostgreSQL with two daemons sharing each cycle (issue 16; docs/postgresql.md).

A private PostgreSQL server on loopback (tests/postgres_server.py: fsync off, as a test
server, so the figures are of the store's work, not of a disk). On SQLite the database's
work is inside the daemon's process; on PostgreSQL much of it is in the server's, so its
CPU is shown beside the daemon's: the server's postmaster and every backend it reaped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.bench.bench import Sizes, cpu_seconds_in, markdown_table, strategy_cycles, walls_shown
from tests.postgres_server import PostgresServer

FETCHES = {
    "by_key": {"key_filter": "in", "batch_size": 50},
    "incremental": {"mode": "incremental", "overlap_seconds": 0},
}


def scenario_k(sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    with PostgresServer.running() as server:
        return _on_both(sizes, work, server)


def _on_both(sizes: Sizes, work: Path, server: PostgresServer) -> list[dict[str, Any]]:
    # For libpq, in this process and the cycle processes. Put back as it was after: the
    # smoke test runs in a test process whose own server's password it holds.
    previous = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = server.password
    try:
        postmaster = int((server.folder / "data" / "postmaster.pid").read_text().split()[0])
        stat = Path(f"/proc/{postmaster}/stat")
        rows = []
        for fetch, connection in FETCHES.items():
            for database in ("sqlite", "postgresql"):
                on = (server.new_database(), lambda: cpu_seconds_in(stat, True))
                row = strategy_cycles(
                    sizes.feeds,
                    sizes,
                    work,
                    connection,
                    database=on if database == "postgresql" else None,
                )
                rows.append({"fetch": fetch, "database": database, **row})
            # Two daemons on one database, sharing the clock's cycle of each slot.
            on = (server.new_database(), lambda: cpu_seconds_in(stat, True))
            row = strategy_cycles(sizes.feeds, sizes, work, connection, database=on, daemons=2)
            rows.append({"fetch": fetch, "database": "postgresql, 2 daemons", **row})
        return rows
    finally:
        if previous is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = previous


def render_k(rows: list[dict[str, Any]]) -> str:
    columns = [
        "fetch",
        "database",
        "listings",
        "wall s: median (runs)",
        "daemon CPU s",
        "database server CPU s",
        "daemon + server CPU s",
        "peak RSS MB",
        "listings each daemon checked",
        "errors",
    ]
    table = [
        [
            r["fetch"],
            r["database"],
            f"{r['listings']:,}",
            walls_shown(r),
            r["cpu_seconds"],
            r.get("database_cpu_seconds", "(in the daemon)"),
            round(r["cpu_seconds"] + r.get("database_cpu_seconds", 0.0), 3),
            r["peak_rss_mb"],
            " + ".join(f"{n:,}" for n in r.get("checked_by_each", [r["listings_checked"]])),
            r["errors"],
        ]
        for r in rows
    ]
    return "\n".join(markdown_table(columns, table))
