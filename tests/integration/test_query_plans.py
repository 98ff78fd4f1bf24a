"""A cycle's cost grows with the listings it asks about, not with everything stored: no
statement a cycle runs reads a whole table that grows with listings, changes or posts
(docs/benchmarks.md "Scenario I"). Every statement is caught as SQLite runs it, in a real
cycle over the sandbox MLS and platforms, and its plan asked of SQLite itself."""

from __future__ import annotations

import re
import sqlite3

from daemon.store import connections, retention
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
    "mail_digest_items",
    "pushed_events",
)
# A plan line reading a whole table (not `SEARCH ... USING INDEX`). The `\b` keeps the name
# whole: without it the match could back off to a shorter name before " USING INDEX".
WHOLE_TABLE = re.compile(r"^SCAN (\w+)\b(?! USING (?:COVERING )?INDEX)")
# A plan line that reads a table, and the table (or the alias the statement gave it).
READS = re.compile(r"^(?:SCAN|SEARCH) (\w+)\b")
# A read of a table by its ids, or through an index: which index, and what it is searched by.
# A bare `SEARCH table` is SQLite's min() or max() of the ids: the first row in id order that
# the statement's condition lets through.
BY_ID = re.compile(r"^SEARCH \w+(?: USING INTEGER PRIMARY KEY \(rowid[=<>]\?\))?$")
BY_INDEX = re.compile(r"^SEARCH \w+ USING (?:COVERING )?INDEX (\w+)(?: \((.*)\))?$")
# `FROM table alias`, `JOIN table AS alias`, `FROM a x, b y`: SQLite's plan names a table by
# its alias.
ALIAS = re.compile(r"(?:\bFROM|\bJOIN|,)\s+(\w+)\s+(?:AS\s+)?(\w+)", re.IGNORECASE)


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
    mls.put("K120", "Active")
    await track(rt, "incr", ["K120"], prefix="I-")  # tracked since: read by key (unconfirmed)
    seen: list[str] = []
    await on_sqlite(rt.db).conn.set_trace_callback(seen.append)
    for key in keys[:5] + keys[60:65]:
        mls.set_status(key, "Closed")
    report = await rt.engine.sync_all()
    await on_sqlite(rt.db).conn.set_trace_callback(lambda _statement: None)
    assert report.run.status_changes == 11 and report.run.posts_unpublished == 5
    assert (await connections.get(rt.db, "incr")) is not None
    return seen


def _plan(conn: sqlite3.Connection, statement: str) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")]


def _bounded(conn: sqlite3.Connection, line: str) -> bool:
    """Whether a plan line reads a part of its table that does not grow with its history:
    rows by their ids (or the first in id order), a range of an index up to a bound, one row
    by a unique index's whole key, or a unique partial index (one row per key, of the rows it
    covers: pending deliveries)."""
    if BY_ID.match(line):
        return True
    found = BY_INDEX.match(line)
    if found is None:
        return False
    index, searched = found.group(1), found.group(2) or ""
    if "<?" in searched or ">?" in searched:
        return True
    (table,) = conn.execute(
        "SELECT tbl_name FROM sqlite_master WHERE name = ?", (index,)
    ).fetchone()
    unique, partial = next(
        (bool(row[2]), bool(row[4]))
        for row in conn.execute(f"PRAGMA index_list({table})")
        if row[1] == index
    )
    columns = len(conn.execute(f"PRAGMA index_info({index})").fetchall())
    return unique and (partial or searched.count("=?") == columns)


def _table_read(line: str, statement: str) -> str | None:
    """The table a plan line reads, its alias resolved; None for a line that reads none."""
    found = READS.match(line)
    if found is None:
        return None
    aliases = {alias: table for table, alias in ALIAS.findall(statement)}
    return aliases.get(found.group(1), found.group(1))


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
                if WHOLE_TABLE.match(line) and _table_read(line, statement) in GROWING:
                    scans[statement[:160]] = line
        # An incremental connection's unconfirmed listings (read by key every cycle), and
        # those an event named (read again for the overlap), are found through the indexes
        # that hold them alone, not among all of its listings.
        unconfirmed = [s for s in wanted if s.startswith("SELECT") and "needs_read = 1" in s]
        plans = [line for statement in unconfirmed for line in _plan(conn, statement)]
    finally:
        conn.close()
    assert scans == {}, f"whole-table reads at {iso(utcnow())}: {scans}"
    assert len(unconfirmed) == 2, unconfirmed  # which connections have any; one's own
    reads = [p for p in plans if _table_read(p, "") == "listings"]
    by_index = [re.search(r"USING (?:COVERING )?INDEX (listings_\w+)", p) for p in reads]
    assert {m.group(1) if m else None for m in by_index} == {
        "listings_unconfirmed",
        "listings_read_again",
    }, plans


async def test_pruning_after_a_cycle_reads_only_what_is_past_the_retention(live: Live) -> None:
    """The prune that follows every cycle finds the rows it deletes by the time it prunes by:
    a read of a whole history table there costs more with each day the daemon has run, though
    nothing may be old enough to go."""
    seen: list[str] = []
    await on_sqlite(live.rt.db).conn.set_trace_callback(seen.append)
    await retention.prune(live.rt.db, iso(utcnow()), mail_on=True)
    await on_sqlite(live.rt.db).conn.set_trace_callback(lambda _statement: None)
    wanted = sorted(
        {s.strip() for s in seen if s.lstrip().upper().startswith(("SELECT", "DELETE"))}
    )
    assert sum(s.upper().startswith("DELETE") for s in wanted) == 4  # events, deliveries, mail x2
    conn = sqlite3.connect(on_sqlite(live.rt.db).path)
    try:
        reads = {}
        for statement in wanted:
            for line in _plan(conn, statement):
                if _table_read(line, statement) in GROWING and not _bounded(conn, line):
                    reads[statement[:160]] = line
    finally:
        conn.close()
    assert reads == {}, f"reads beyond the retention's bound: {reads}"
