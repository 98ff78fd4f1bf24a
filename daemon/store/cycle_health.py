"""How the sync cycles have been going, as the alerting metrics need it, read from the run
history: so that a restart starts from what happened, not from zero.

A cycle is a run of every connection (scope 'all'), from the daemon or `mls-sync sync`. A
connection is failing in a cycle when the MLS could not be read for it (a connection or a
batch error), not when one of its records or posts is bad. A cycle "read the MLS" when it
ended ok, or partial with at least one connection it synced not failing: errors of single
listings or posts are counted apart (the error rate), and an incremental connection that
found no change read its MLS though it checked no listing. A cycle whose every connection
failed read nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.store.database import Database
from daemon.timestamps import parse_iso

LAST_ENDED = """
SELECT id, finished_at FROM sync_runs
WHERE scope = 'all' AND outcome IN ('ok', 'partial', 'failed') ORDER BY id DESC LIMIT 1
"""
# An error of this run_errors row (alias e) that means its connection's MLS was not read.
FAILING_ERROR = """
e.severity = 'error' AND e.scope IN ('connection', 'batch') AND e.connection_id IS NOT NULL
"""
FAILING_IN_RUN = (
    f"SELECT DISTINCT e.connection_id FROM run_errors AS e WHERE e.run_id = ? AND {FAILING_ERROR}"
)
# `connections` counts the connections the run synced (a connection whose secret cannot be
# decrypted is not among them, yet fails: such a cycle errs towards "not read").
LAST_READ_THE_MLS = f"""
SELECT r.finished_at FROM sync_runs AS r
WHERE r.scope = 'all' AND (r.outcome = 'ok' OR (r.outcome = 'partial' AND r.connections > (
    SELECT count(DISTINCT e.connection_id) FROM run_errors AS e
    WHERE e.run_id = r.id AND {FAILING_ERROR}
)))
ORDER BY r.id DESC LIMIT 1
"""
# Per connection: the end of the last run of it (a cycle, or a sync of that connection) that
# read its MLS without a connection or batch error. A run synced the connection if it started
# after the connection was added and no later than the connection's last sync ended: a paused
# connection, or one waiting for credentials, is not synced, and its time stands still.
LAST_READ_BY_CONNECTION = f"""
SELECT c.id, (
    SELECT r.finished_at FROM sync_runs AS r
    WHERE r.scope IN ('all', 'connection:' || c.id)
        AND r.outcome IN ('ok', 'partial', 'failed')
        AND r.started_at >= c.created_at AND r.started_at <= c.last_synced_at
        AND NOT EXISTS (
            SELECT 1 FROM run_errors AS e
            WHERE e.run_id = r.id AND e.connection_id = c.id AND {FAILING_ERROR}
        )
    ORDER BY r.id DESC LIMIT 1
) FROM mls_connections AS c ORDER BY c.id
"""
FIRST_STARTED = "SELECT started_at FROM sync_runs WHERE scope = 'all' ORDER BY id LIMIT 1"


@dataclass(frozen=True)
class CycleHealth:
    last_ended_at: float | None  # Unix time; None before the first cycle
    last_read_the_mls_at: float | None
    first_started_at: float | None
    connection_failing: dict[str, bool]  # every connection: failing in the last cycle?
    connection_last_read_at: dict[str, float | None]  # every connection: its MLS last read


async def latest(db: Database) -> CycleHealth:
    async with db.reading() as conn:
        ended = await conn.fetch_one(LAST_ENDED)
        read = await conn.fetch_one(LAST_READ_THE_MLS)
        first = await conn.fetch_one(FIRST_STARTED)
        failing: set[str] = set()
        if ended is not None:
            failing = {str(r[0]) for r in await conn.fetch_all(FAILING_IN_RUN, (ended[0],))}
        last_read = {str(r[0]): r[1] for r in await conn.fetch_all(LAST_READ_BY_CONNECTION)}
    return CycleHealth(
        last_ended_at=_unix(ended[1]) if ended else None,
        last_read_the_mls_at=_unix(read[0]) if read else None,
        first_started_at=_unix(first[0]) if first else None,
        connection_failing={i: i in failing for i in last_read},
        connection_last_read_at={i: _unix(at) if at else None for i, at in last_read.items()},
    )


def _unix(text: str) -> float:
    return parse_iso(text).timestamp()
