"""How the sync cycles have been going, as the alerting metrics need it, read from the run
history: so that a restart starts from what happened, not from zero.

A cycle is a run of every connection (scope 'all'), from the daemon or `mls-sync sync`. It
"read the MLS" when it ended ok, or partial with listings checked: errors of single listings
or posts are counted apart (the error rate), and a permanently bad listing must not make every
cycle look failed; but a cycle whose every batch failed read nothing.
A connection is failing in a cycle when the MLS could not be read for it (a connection or a
batch error), not when one of its records is bad.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.clock import parse_iso
from daemon.store.database import Database

LAST_ENDED = """
SELECT id, finished_at FROM sync_runs
WHERE scope = 'all' AND outcome IN ('ok', 'partial', 'failed') ORDER BY id DESC LIMIT 1
"""
LAST_READ_THE_MLS = """
SELECT finished_at FROM sync_runs
WHERE scope = 'all' AND (outcome = 'ok' OR (outcome = 'partial' AND listings_checked > 0))
ORDER BY id DESC LIMIT 1
"""
FIRST_STARTED = "SELECT started_at FROM sync_runs WHERE scope = 'all' ORDER BY id LIMIT 1"
FAILING_IN_RUN = """
SELECT DISTINCT connection_id FROM run_errors
WHERE run_id = ? AND severity = 'error' AND scope IN ('connection', 'batch')
    AND connection_id IS NOT NULL
"""
CONNECTION_IDS = "SELECT id FROM mls_connections ORDER BY id"


@dataclass(frozen=True)
class CycleHealth:
    last_ended_at: float | None  # Unix time; None before the first cycle
    last_read_the_mls_at: float | None
    first_started_at: float | None
    connection_failing: dict[str, bool]  # every connection: failing in the last cycle?


async def latest(db: Database) -> CycleHealth:
    async with db.reading() as conn:
        async with conn.execute(LAST_ENDED) as cur:
            ended = await cur.fetchone()
        async with conn.execute(LAST_READ_THE_MLS) as cur:
            read = await cur.fetchone()
        async with conn.execute(FIRST_STARTED) as cur:
            first = await cur.fetchone()
        failing: set[str] = set()
        if ended is not None:
            async with conn.execute(FAILING_IN_RUN, (ended[0],)) as cur:
                failing = {str(r[0]) for r in await cur.fetchall()}
        async with conn.execute(CONNECTION_IDS) as cur:
            ids = [str(r[0]) for r in await cur.fetchall()]
    return CycleHealth(
        last_ended_at=_unix(ended[1]) if ended else None,
        last_read_the_mls_at=_unix(read[0]) if read else None,
        first_started_at=_unix(first[0]) if first else None,
        connection_failing={i: i in failing for i in ids},
    )


def _unix(text: str) -> float:
    return parse_iso(text).timestamp()
