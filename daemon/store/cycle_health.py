"""How the sync has been going, as the alerting metrics need it, read from the database: so
that a restart starts from what happened, not from zero, and every daemon sharing a database
reports the same.

A cycle is a run of every connection (scope 'all'), from a daemon or `mls-sync sync`. A sync
of a connection read its MLS unless it recorded a connection or batch error for it (it could
not be reached, or a batch failed); one bad record or post does not count. A cycle "read the
MLS" when it synced at least one connection that read it: errors of single listings or posts
are counted apart (the error rate), an incremental connection that found no change read its
MLS though it checked no listing, and a cycle that synced no connection (another daemon had
synced them all) read nothing. Per connection, its own row says when its MLS was last read,
and whether its last sync failed to read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.store.connections import MLS_NOT_READ
from daemon.store.database import Database
from daemon.timestamps import parse_iso

LAST_ENDED = """
SELECT id, finished_at FROM sync_runs
WHERE scope = 'all' AND outcome IN ('ok', 'partial', 'failed') ORDER BY id DESC LIMIT 1
"""
# A cycle that synced no connection read nothing: with several daemons on one database, each
# records a run per slot, and those that found every connection synced by another are `ok`.
# `connections` counts the connections the run synced (a connection whose secret cannot be
# decrypted is not among them, yet fails: such a cycle errs towards "not read").
LAST_READ_THE_MLS = f"""
SELECT r.finished_at FROM sync_runs AS r
WHERE r.scope = 'all' AND r.outcome IN ('ok', 'partial') AND r.connections > (
    SELECT count(DISTINCT e.connection_id) FROM run_errors AS e
    WHERE e.run_id = r.id AND {MLS_NOT_READ}
)
ORDER BY r.id DESC LIMIT 1
"""
# Per connection, from its own row: the end of its last sync that read its MLS, and whether
# its last sync did not. Only an active connection is synced: a paused one, or one waiting
# for credentials, is not failing (its alert is the state's).
BY_CONNECTION = """
SELECT id, last_read_at,
    state = 'active' AND last_synced_at IS NOT NULL
        AND (last_read_at IS NULL OR last_read_at < last_synced_at)
FROM mls_connections ORDER BY id
"""
# The connections to be read (not those paused by a person; those waiting for credentials
# are), and their last read by any sync: reads between cycles count too (a change-log poll, a
# sync asked for one connection), since such a sync early in a slot leaves the clock's cycle
# nothing to sync there.
TO_BE_READ = "SELECT count(*), max(last_read_at) FROM mls_connections WHERE state != 'paused'"
FIRST_STARTED = "SELECT started_at FROM sync_runs WHERE scope = 'all' ORDER BY id LIMIT 1"


@dataclass(frozen=True)
class CycleHealth:
    last_ended_at: float | None  # Unix time; None before the first cycle
    last_read_the_mls_at: float | None
    first_started_at: float | None
    connection_failing: dict[str, bool]  # every connection: did its last sync fail to read?
    connection_last_read_at: dict[str, float | None]  # every connection: its MLS last read


async def latest(db: Database) -> CycleHealth:
    async with db.reading() as conn:
        ended = await conn.fetch_one(LAST_ENDED)
        read = await conn.fetch_one(LAST_READ_THE_MLS)
        first = await conn.fetch_one(FIRST_STARTED)
        rows = await conn.fetch_all(BY_CONNECTION)
        to_be_read = await conn.fetch_one(TO_BE_READ)
    assert to_be_read is not None  # an aggregate: always one row
    read_at = max((t for t in (read[0] if read else None, to_be_read[1]) if t), default=None)
    if to_be_read[0] == 0 and ended is not None:
        read_at = ended[1]  # nothing to read: every cycle that ended did all there was
    return CycleHealth(
        last_ended_at=_unix(ended[1]) if ended else None,
        last_read_the_mls_at=_unix(read_at) if read_at else None,
        first_started_at=_unix(first[0]) if first else None,
        connection_failing={str(r[0]): bool(r[2]) for r in rows},
        connection_last_read_at={str(r[0]): _unix(r[1]) if r[1] else None for r in rows},
    )


def _unix(text: str) -> float:
    return parse_iso(text).timestamp()
