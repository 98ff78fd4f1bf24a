"""One sync of a connection at a time, across processes (invariant 3).

A lease is a row with a holder and an expiry: taking it is one conditional upsert, so two
processes cannot both win, and a holder that crashed stops blocking once its lease expires.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from daemon.store.database import Database
from daemon.store.dialect import Sql, both, json_values
from daemon.store.group_commit import GroupWriter
from daemon.store.session import Read, Row, Session, Writes

# Free, or expired: the one statement that takes leases, for one or many. A lease whose holder
# is dead but unexpired is taken over by TAKE_OVER, from that holder alone. A request that
# names a slot (its 4th and 5th values) is refused when a sync of its connection began in that
# slot: another daemon did the slot's work (daemon/sync/cycle_slots.py), judged under the
# write lock.
_NOT_SYNCED_SINCE = """NOT EXISTS (SELECT 1 FROM mls_connections c
    WHERE c.id = {id} AND c.last_sync_started_at >= {since}
        AND c.last_sync_started_at < {until})"""
ACQUIRE = both(
    """
INSERT INTO sync_leases (connection_id, holder, expires_at)
{wanted}
ON CONFLICT (connection_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE sync_leases.expires_at < :now
RETURNING connection_id, holder
""",
    wanted=Sql(
        """SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
    json_extract(value, '$[2]') FROM json_each(:wanted)
WHERE """
        + _NOT_SYNCED_SINCE.format(
            id="json_extract(value, '$[0]')",
            since="json_extract(value, '$[3]')",
            until="json_extract(value, '$[4]')",
        ),
        """SELECT value ->> 0, value ->> 1, value ->> 2
    FROM json_array_elements(CAST(:wanted AS json)) AS value
WHERE """
        + _NOT_SYNCED_SINCE.format(id="value ->> 0", since="value ->> 3", until="value ->> 4"),
    ),
)
TAKE_OVER = f"""
UPDATE sync_leases SET holder = :holder, expires_at = :until
WHERE connection_id = :id AND holder = :previous
  AND {
    _NOT_SYNCED_SINCE.format(
        id=":id", since="CAST(:since AS TEXT)", until="CAST(:slot_end AS TEXT)"
    )
}
"""
# A lease is its holder's until it expires. One that expired is lost, even if nobody has
# taken it yet: another process may have taken it and released it meanwhile, and writes of its
# old holder must not follow the newer ones. Renewals and fences alike go by this.
UNEXPIRED = "expires_at >= :now"
RENEW_HELD = f"""
UPDATE sync_leases SET expires_at = :until
WHERE connection_id = :id AND holder = :holder AND {UNEXPIRED}
"""
STILL_HELD = f"""
SELECT 1 FROM sync_leases WHERE connection_id = :id AND holder = :holder AND {UNEXPIRED}
"""
VALID = f"SELECT connection_id, holder FROM sync_leases WHERE {UNEXPIRED}"
VALID_OF = both(
    "SELECT connection_id, holder FROM sync_leases\n"
    f"WHERE connection_id IN ({{ids}}) AND {UNEXPIRED}",
    ids=json_values(":ids"),
)
RELEASE = "DELETE FROM sync_leases WHERE connection_id = :id AND holder = :holder"
# A lease of the holder's own (a process's proof that it lives): taken or renewed, whatever
# its state, since nobody else ever holds it.
PUT_OWN = """
INSERT INTO sync_leases (connection_id, holder, expires_at) VALUES (:id, :holder, :until)
ON CONFLICT (connection_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
"""
FORGET_EXPIRED = "DELETE FROM sync_leases WHERE connection_id LIKE :prefix AND expires_at < :now"
WITH_PREFIX = "SELECT connection_id, expires_at FROM sync_leases WHERE connection_id LIKE :prefix"
HOLDER = "SELECT holder, expires_at FROM sync_leases WHERE connection_id = ?"


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    connection_id: str
    holder: str
    now: str
    until: str
    # A slot (its start and end): refused if a sync of the connection began in it.
    unless_synced_in: tuple[str, str] | None = None


async def acquire(db: Database, wanted: LeaseRequest) -> bool:
    """One lease, in a transaction of its own: whether it was won."""
    async with db.transaction() as conn:
        return (await acquire_many(conn, [wanted]))[0]


async def acquire_many(conn: Session, wanted: Sequence[LeaseRequest]) -> list[bool]:
    """Several leases in one statement, inside the caller's transaction (for group commit):
    whether each request won its lease. Expiry is judged at the earliest request's time."""
    rows = [
        [w.connection_id, w.holder, w.until, *(w.unless_synced_in or (None, None))] for w in wanted
    ]
    now = min(w.now for w in wanted)
    won = {
        (r[0], r[1])
        for r in await conn.fetch_all(ACQUIRE, {"wanted": json.dumps(rows), "now": now})
    }
    return [(w.connection_id, w.holder) in won for w in wanted]


def acquirer(db: Database) -> GroupWriter[LeaseRequest, bool]:
    """Lease requests of many connections, taken in one statement per group."""
    return GroupWriter(db, acquire_many)


async def renew_many(db: Database, holders: Mapping[str, str], now: str, until: str) -> set[str]:
    """Renews several leases (connection id -> holder) in one transaction; returns the ids
    of those renewed. Any other was lost: it expired, or another process holds it now."""
    renewed = set()
    async with db.transaction() as conn:
        for cid, holder in holders.items():
            params = {"id": cid, "holder": holder, "now": now, "until": until}
            if await conn.execute(RENEW_HELD, params) == 1:
                renewed.add(cid)
    return renewed


async def valid_in(conn: Session, now: str) -> set[tuple[str, str]]:
    """(connection id, holder) of every unexpired lease, read inside the transaction that
    writes under them: the fence. While it runs, the transaction holds SQLite's write lock,
    so no other process can take a lease over before it commits."""
    return {(str(r[0]), str(r[1])) for r in await conn.fetch_all(VALID, {"now": now})}


def valid_of_read(now: str, connection_ids: Collection[str]) -> Read:
    """`valid_in`'s read, of these connections alone: a group of writes names a few
    connections, and every lease there is would be a read that grows with the connections
    synced at once. Run inside the transaction that writes, with its other reads in one trip
    (`Session.fetch_each`)."""
    return VALID_OF, {"now": now, "ids": json.dumps(sorted(connection_ids))}


def valid_of_rows(rows: Sequence[Row]) -> set[tuple[str, str]]:
    """What `valid_of_read`'s rows say: (connection id, holder) of each unexpired lease."""
    return {(str(r[0]), str(r[1])) for r in rows}


async def renew_held(db: Database, lease_id: str, holder: str, now: str, until: str) -> bool:
    """Extends a lease `holder` still holds, unexpired; False when it has lost it."""
    params = {"id": lease_id, "holder": holder, "now": now, "until": until}
    return await db.write_one(RENEW_HELD, params) == 1


async def still_held(conn: Session, lease_id: str, holder: str, now: str) -> bool:
    """Inside the transaction of a write the lease guards (fencing): whether `holder` still
    holds it, unexpired. If not, the caller writes nothing."""
    params = {"id": lease_id, "holder": holder, "now": now}
    return bool(await conn.fetch_all(STILL_HELD, params))


async def take_over(
    db: Database,
    connection_id: str,
    previous: str,
    holder: str,
    until: str,
    unless_synced_in: tuple[str, str] | None = None,
) -> bool:
    """Takes a lease from a holder known to be dead; fails if someone else got there first
    (or, given `unless_synced_in`, if a sync of the connection began in that slot)."""
    since, slot_end = unless_synced_in or (None, None)
    params = {
        "id": connection_id,
        "previous": previous,
        "holder": holder,
        "until": until,
        "since": since,
        "slot_end": slot_end,
    }
    return await db.write_one(TAKE_OVER, params) == 1


async def put_own(db: Database, lease_id: str, holder: str, until: str) -> None:
    """Takes or renews a lease only `holder` ever holds."""
    await db.write_one(PUT_OWN, {"id": lease_id, "holder": holder, "until": until})


async def forget_expired(db: Database, prefix: str, now: str) -> None:
    """Deletes the expired leases whose id begins with `prefix` (left by dead processes)."""
    await db.write_one(FORGET_EXPIRED, {"prefix": prefix + "%", "now": now})


async def with_prefix(conn: Session, prefix: str) -> list[tuple[str, str]]:
    """(lease id, expires at) of every lease, expired or not, whose id begins with `prefix`."""
    rows = await conn.fetch_all(WITH_PREFIX, {"prefix": prefix + "%"})
    return [(row[0], row[1]) for row in rows]


async def release(db: Database, connection_id: str, holder: str) -> None:
    await db.write_one(RELEASE, {"id": connection_id, "holder": holder})


async def release_in(conn: Writes, held: Sequence[tuple[str, str]]) -> None:
    """(connection id, holder) for each; inside a transaction that records the end of the
    work the leases guarded."""
    if held:
        await conn.execute_many(RELEASE, [{"id": i, "holder": h} for i, h in held])


async def holder_of(db: Database, connection_id: str) -> tuple[str, str] | None:
    row = await db.fetch_one(HOLDER, (connection_id,))
    return (row[0], row[1]) if row else None
