"""A cycle's cost grows with the listings it asks about, not with everything stored: no
statement a cycle runs reads a whole table that grows with listings, changes or posts
(docs/benchmarks.md "Scenario I"). Every statement is caught as SQLite runs it, in a real
cycle over the sandbox MLS and platforms, and its plan asked of SQLite itself."""

from __future__ import annotations

import re
import sqlite3

from daemon.store import connections
from daemon.timestamps import iso, utcnow
from tests.helpers import Live, add_account, add_connection, add_post, on_sqlite, track

# Tables whose rows grow with the listings tracked, their history or their posts.
GROWING = (
    "listings",
    "status_changes",
    "social_posts",
    "events",
    "sync_runs",
    "run_errors",
    "webhook_deliveries",
    "webhook_attempts",
    "mail_outbox",
    "pushed_events",
)
# A plan line reading a whole table (not `SEARCH ... USING INDEX`). The `\b` keeps the name
# whole: without it the match could back off to a shorter name before " USING INDEX".
WHOLE_TABLE = re.compile(r"^SCAN (\w+)\b(?! USING (?:COVERING )?INDEX)")


async def _statements_of_cycles(live: Live) -> list[str]:
    rt, mls = live.rt, live.mls
    keys = [f"K{n}" for n in range(120)]
    for key in keys:
        mls.put(key, "Active")
    await add_connection(rt, live.mls_url, "by-key")
    await add_connection(rt, live.mls_url, "incr", mode="incremental", overlap_seconds=0)
    await track(rt, "by-key", keys[:60])
    await track(rt, "incr", keys[60:], prefix="I-")
    await add_account(rt, "fb-1", "facebook", "fb-token")
    for n, key in enumerate(keys[:10]):
        post_id = f"1000_{n}"
        live.platforms.publish("facebook", post_id, "fb-token")
        await add_post(rt, f"p{n}", f"L-{key}", "fb-1", post_id)
    await rt.engine.sync_all()  # first seen: statuses set, a cursor for incremental
    seen: list[str] = []
    await on_sqlite(rt.db).conn.set_trace_callback(seen.append)
    for key in keys[:5] + keys[60:65]:
        mls.set_status(key, "Closed")
    report = await rt.engine.sync_all()
    await on_sqlite(rt.db).conn.set_trace_callback(lambda _statement: None)
    assert report.run.status_changes == 10 and report.run.posts_unpublished == 5
    assert (await connections.get(rt.db, "incr")) is not None
    return seen


def _plan(conn: sqlite3.Connection, statement: str) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")]


async def test_no_statement_of_a_cycle_reads_a_whole_growing_table(live: Live) -> None:
    statements = await _statements_of_cycles(live)
    kinds = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")
    wanted = sorted({s.strip() for s in statements if s.lstrip().upper().startswith(kinds)})
    assert len(wanted) > 10  # the trace really caught the cycle's statements
    conn = sqlite3.connect(on_sqlite(live.rt.db).path)
    try:
        scans = {}
        for statement in wanted:
            for line in _plan(conn, statement):
                found = WHOLE_TABLE.match(line)
                if found and found.group(1) in GROWING:
                    scans[statement[:160]] = line
    finally:
        conn.close()
    assert scans == {}, f"whole-table reads at {iso(utcnow())}: {scans}"
