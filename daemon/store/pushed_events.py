"""Events the MLS pushed (RESO RCP-28), queued between the answer to the MLS and their
application (docs/mls-reso.md "Push"). An event leaves the queue in the transaction that
applies what its listing's read said (`remove_in`, from the sync's writer): a crash in
between loses nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from daemon.store.database import Database
from daemon.store.session import Session, Writes

INSERT = """
INSERT INTO pushed_events (connection_id, sequence, record_key, source, received_at)
VALUES (?, ?, ?, ?, ?)
"""
COUNT = "SELECT count(*) FROM pushed_events WHERE connection_id = ?"
COUNT_UNTRIED = "SELECT count(*) FROM pushed_events WHERE connection_id = ? AND attempts = 0"
TAKE = """
SELECT id, record_key, attempts FROM pushed_events WHERE connection_id = ? ORDER BY id LIMIT ?
"""
TAKE_UNTRIED = """
SELECT id, record_key, attempts FROM pushed_events
WHERE connection_id = ? AND attempts = 0 ORDER BY id LIMIT ?
"""
DELETE = "DELETE FROM pushed_events WHERE id = ?"
TRIED = "UPDATE pushed_events SET attempts = attempts + 1 WHERE id = ?"


@dataclass(frozen=True, slots=True)
class PushedEvent:
    sequence: int
    record_key: str


@dataclass(frozen=True, slots=True)
class Queued:
    id: int
    record_key: str
    attempts: int  # applies so far that could not read its listing


async def queue(
    db: Database,
    connection_id: str,
    pushed: Sequence[PushedEvent],
    source: str | None,
    now: str,
    limit: int,
) -> bool:
    """Queues `pushed` unless the connection's queue already holds `limit` events or more
    (then nothing is queued: False). Checked and written in one transaction."""
    async with db.transaction() as conn:
        row = await conn.fetch_one(COUNT, (connection_id,))
        if row is not None and row[0] >= limit:
            return False
        await conn.execute_many(
            INSERT, [(connection_id, e.sequence, e.record_key, source, now) for e in pushed]
        )
    return True


async def waiting(db: Database, connection_id: str, tried_too: bool = True) -> int:
    """Events waiting; with `tried_too` off, those never tried only."""
    row = await db.fetch_one(COUNT if tried_too else COUNT_UNTRIED, (connection_id,))
    return int(row[0]) if row else 0


async def take(
    db: Database, connection_id: str, limit: int, tried_too: bool = True
) -> list[Queued]:
    """The oldest `limit` queued events of the connection (with `tried_too` off, of those
    never tried); they stay queued until `remove_in` (they are read, not taken away)."""
    rows = await db.fetch_all(TAKE if tried_too else TAKE_UNTRIED, (connection_id, limit))
    return [Queued(int(r[0]), str(r[1]), int(r[2])) for r in rows]


async def tried(conn: Session, ids: Sequence[int]) -> None:
    """One more apply of these events could not read their listings; in the transaction that
    checks the applying sync still holds its lease."""
    if ids:
        await conn.execute_many(TRIED, [(i,) for i in ids])


async def remove_in(conn: Writes, ids: Sequence[int]) -> None:
    """Inside the transaction that applies what the events' listings' reads said."""
    if ids:
        await conn.execute_many(DELETE, [(i,) for i in ids])
