"""Scenario L: the prune after each cycle, on a history that has grown (issue 16's "up").

A SQLite store with a history of the sizes in `Sizes.l_history`: that many records of webhook
deliveries, and a fifth of it in mail sent and in digests' items, all recent enough to keep.
`retention.prune` runs as the daemon runs it after every cycle (30 days of retention,
nothing old enough to go), three times; the median's wall time and the process's CPU are
reported. Its cost should not grow with the history: only what is past the retention is
read.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from daemon import eventloop
from daemon.store import retention
from daemon.store.sqlite import SqliteDatabase
from daemon.timestamps import iso, utcnow
from tests.bench.bench import Sizes, markdown_table

RETENTION_DAYS = 30
RUNS = 3


def scenario_l(sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    return [_at_size(work / f"history-{n}.db", n) for n in sizes.l_history]


def _at_size(path: Path, deliveries: int) -> dict[str, Any]:
    eventloop.run(_migrated, path)
    _grow(path, deliveries)
    walls, cpus, deleted = [], [], 0
    for _ in range(RUNS):
        wall, cpu, gone = eventloop.run(_prune_once, path)
        walls.append(wall)
        cpus.append(cpu)
        deleted += gone
    return {
        "deliveries": deliveries,
        "mail": deliveries // 5,
        "digest_items": deliveries // 5,
        "prune_ms": round(statistics.median(walls) * 1000, 1),
        "prune_cpu_ms": round(statistics.median(cpus) * 1000, 1),
        "deleted": deleted,
    }


async def _migrated(path: Path) -> None:
    db = await SqliteDatabase.open(path)
    await db.close()


def _grow(path: Path, deliveries: int) -> None:
    """A history kept within the retention: written straight to the file, in one go."""
    recent = iso(utcnow() - timedelta(days=RETENTION_DAYS // 2))
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO webhook_endpoints (url, event_types, secret_encrypted, cursor, "
                "created_at, updated_at) VALUES ('https://hooks.example.test/in', '[]', 'x', "
                "?, ?, ?)",
                (deliveries, recent, recent),
            )
            conn.executemany(
                "INSERT INTO webhook_deliveries (endpoint_id, event_id, state, attempts, "
                "created_at, updated_at) VALUES (1, ?, 'delivered', 1, ?, ?)",
                ((n, recent, recent) for n in range(1, deliveries + 1)),
            )
            conn.executemany(
                "INSERT INTO mail_outbox (user_id, recipient, kind, status, facts, event_ids, "
                "next_attempt_at, created_at, sent_at) VALUES ('default', 'a@example.test', "
                "'listing.sold', 'sent', '{}', '[]', ?, ?, ?)",
                ((recent, recent, recent) for _ in range(deliveries // 5)),
            )
            conn.executemany(
                "INSERT INTO mail_digest_items (user_id, recipient, event_id, type, data, "
                "due_at, message_id) VALUES ('default', 'a@example.test', ?, 'listing.sold', "
                "'{}', ?, 1)",
                ((n, recent) for n in range(1, deliveries // 5 + 1)),
            )
    finally:
        conn.close()


async def _prune_once(path: Path) -> tuple[float, float, int]:
    db = await SqliteDatabase.open(path)
    try:
        before = iso(utcnow() - timedelta(days=RETENTION_DAYS))
        wall, cpu = time.perf_counter(), time.process_time()
        pruned = await retention.prune(db, before, mail_on=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await db.close()
    return wall, cpu, pruned.events + pruned.deliveries + pruned.mail


def render_l(rows: list[dict[str, Any]]) -> str:
    columns = [
        "delivery records",
        "mail sent",
        "digest items",
        "prune ms (median of 3)",
        "its CPU ms",
        "rows deleted",
    ]
    table = [
        [
            f"{r['deliveries']:,}",
            f"{r['mail']:,}",
            f"{r['digest_items']:,}",
            r["prune_ms"],
            r["prune_cpu_ms"],
            r["deleted"],
        ]
        for r in rows
    ]
    return "\n".join(markdown_table(columns, table))
