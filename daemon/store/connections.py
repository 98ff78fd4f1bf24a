"""MLS connections: definitions, credentials (encrypted), state and the incremental cursor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.enums import LIVE_POSTS_SQL, ConnectionState, QueryMode
from daemon.errors import Conflict, NotFound
from daemon.specs import ConnectionSpec
from daemon.store import events
from daemon.store.database import Database
from daemon.store.paging import Collection
from daemon.store.records import ConnectionRow, from_row
from daemon.store.session import Session, Writes

_SPEC_COLUMNS = (
    "name",
    "base_url",
    "resource",
    "auth_kind",
    "token_url",
    "client_id",
    "scope",
    "mode",
    "key_filter",
    "batch_size",
    "page_size",
    "rate_per_second",
    "overlap_seconds",
    "full_reconcile_seconds",
    "poll_seconds",
    "select_mlg_can_view",
)

INSERT = f"""
INSERT INTO mls_connections
    (id, {", ".join(_SPEC_COLUMNS)}, user_id, secret_encrypted, created_at, updated_at)
VALUES (:id, {", ".join(":" + c for c in _SPEC_COLUMNS)}, coalesce(:user_id, 'default'),
    :secret, :now, :now)
"""
# SQLite checks NOT NULL on the proposed row before an upsert's conflict clause, so keeping the
# stored secret takes an UPDATE of its own.
UPDATE = f"""
UPDATE mls_connections SET
    {", ".join(f"{c} = :{c}" for c in _SPEC_COLUMNS)},
    user_id = coalesce(:user_id, user_id),  -- no user given: it stays whose it was
    secret_encrypted = coalesce(:secret, secret_encrypted),
    -- New credentials are the way out of needs_reauth; a paused connection stays paused.
    state = CASE WHEN state = 'needs_reauth' AND :secret IS NOT NULL THEN 'active' ELSE state END,
    last_error = CASE WHEN :secret IS NOT NULL THEN NULL ELSE last_error END,
    -- Another mode reads another kind of cursor (a timestamp, a sequence): it starts over
    -- with a full pass. (SET expressions see the row as it was.)
    cursor = CASE WHEN mode = :mode THEN cursor END,
    last_full_reconcile_at = CASE WHEN mode = :mode THEN last_full_reconcile_at END,
    -- Push is for mode events: another mode ends it (its queue goes too: upsert).
    push_token_sha256 = CASE WHEN :mode = 'events' THEN push_token_sha256 END,
    updated_at = :now
WHERE id = :id
"""
GET = "SELECT * FROM mls_connections WHERE id = ?"
LIST = "SELECT * FROM mls_connections ORDER BY id"
LIST_ACTIVE = "SELECT * FROM mls_connections WHERE state = 'active' ORDER BY id"
FORGET_PUSHED = "DELETE FROM pushed_events WHERE connection_id = ?"
SET_PUSH_HASH = """
UPDATE mls_connections SET push_token_sha256 = :sha256, updated_at = :now WHERE id = :id
"""
LIST_ACTIVE_IN_MODE = """
SELECT * FROM mls_connections WHERE state = 'active' AND mode = ? ORDER BY id
"""
LIST_ACTIVE_OF_USER = """
SELECT * FROM mls_connections WHERE state = 'active' AND user_id = ? ORDER BY id
"""
SUMMARY_FIELDS = (
    "id",
    "name",
    "mode",
    "state",
    "last_synced_at",
    "last_error",
    "held_by",  # the process syncing it now (host:pid:nonce), or None
    "held_until",  # when that lease runs out unless renewed
)
# With the lease, when one is held: with several daemons on one database, which one syncs it.
SUMMARIES = """
SELECT c.id, c.name, c.mode, c.state, c.last_synced_at, c.last_error, l.holder, l.expires_at
FROM mls_connections c LEFT JOIN sync_leases l ON l.connection_id = c.id AND l.expires_at >= ?
ORDER BY c.id
"""
SET_STATE = """
UPDATE mls_connections SET state = :state, last_error = :error, updated_at = :now WHERE id = :id
"""
COUNT_LISTINGS = "SELECT count(*) FROM listings WHERE connection_id = ?"
# Live: still on its platform, to be taken down (published) or waiting for a person.
COUNT_LIVE_POSTS = f"""
SELECT count(*) FROM social_posts
WHERE status IN {LIVE_POSTS_SQL} AND listing_id IN (SELECT id FROM listings WHERE connection_id = ?)
"""
DELETE_POSTS_OF = """
DELETE FROM social_posts WHERE listing_id IN (SELECT id FROM listings WHERE connection_id = ?)
"""
DELETE_LISTINGS_OF = "DELETE FROM listings WHERE connection_id = ?"
DELETE = "DELETE FROM mls_connections WHERE id = ?"
DELETE_LEASE = "DELETE FROM sync_leases WHERE connection_id = ?"
SAVE_CURSOR = "UPDATE mls_connections SET cursor = :cursor, updated_at = :now WHERE id = :id"
MARK_RECONCILED = """
UPDATE mls_connections SET last_full_reconcile_at = :at, updated_at = :at WHERE id = :id
"""
# An error of the run_errors row `e` that means its connection's MLS was not read (it could
# not be reached, or a batch failed), as opposed to one bad listing or post.
MLS_NOT_READ = """
e.severity = 'error' AND e.scope IN ('connection', 'batch') AND e.connection_id IS NOT NULL
"""
# The end of a connection's sync, in the transaction that records it: by then every error of
# the sync is in the run, so whether it read the MLS is known here, from the row itself
# (several daemons' runs cannot say which of them synced which connection).
MARK_SYNCED = f"""
UPDATE mls_connections SET last_synced_at = :at, last_sync_started_at = :started,
    last_error = :error, updated_at = :at,
    last_read_at = CASE WHEN EXISTS (
        SELECT 1 FROM run_errors AS e
        WHERE e.run_id = :run_id AND e.connection_id = :id AND {MLS_NOT_READ}
    ) THEN last_read_at ELSE :at END
WHERE id = :id
"""
COUNT_BY_STATE = "SELECT state, count(*) FROM mls_connections GROUP BY 1"
ALL_SECRETS = "SELECT id, secret_encrypted FROM mls_connections"
SET_SECRET = "UPDATE mls_connections SET secret_encrypted = ? WHERE id = ?"  # noqa: S105


async def upsert(db: Database, spec: ConnectionSpec, secret: str | None, now: str) -> bool:
    """Creates or updates; `secret` (already encrypted) None keeps the stored one (a new
    connection must have one: daemon/ops/connections.py). Returns whether it is new."""
    params = spec.model_dump(mode="json")
    params["select_mlg_can_view"] = int(spec.select_mlg_can_view)
    params.update(secret=secret, now=now)
    async with db.transaction() as conn:
        existed = await _get(conn, spec.id) is not None
        await conn.execute(UPDATE if existed else INSERT, params)
        if existed and spec.mode != QueryMode.EVENTS:  # push ended: what it queued goes
            await conn.execute(FORGET_PUSHED, (spec.id,))
    return not existed


async def get(db: Database, connection_id: str) -> ConnectionRow | None:
    async with db.reading() as conn:
        return await _get(conn, connection_id)


async def _get(conn: Session, connection_id: str) -> ConnectionRow | None:
    row = await conn.fetch_one(GET, (connection_id,))
    return from_row(ConnectionRow, row) if row else None


async def list_all(db: Database, active_only: bool = False) -> list[ConnectionRow]:
    return [
        from_row(ConnectionRow, r) for r in await db.fetch_all(LIST_ACTIVE if active_only else LIST)
    ]


def candidate(spec: ConnectionSpec, secret_encrypted: str, now: str) -> ConnectionRow:
    """The row `spec` would be, before it is stored: to ask its server something first."""
    given = {c: getattr(spec, c) for c in _SPEC_COLUMNS}
    return ConnectionRow(
        id=spec.id,
        secret_encrypted=secret_encrypted,
        state=ConnectionState.ACTIVE,
        last_error=None,
        cursor=None,
        last_full_reconcile_at=None,
        last_synced_at=None,
        created_at=now,
        updated_at=now,
        user_id=spec.user_id or "default",
        **given,
    )


async def set_push_token(db: Database, connection_id: str, sha256: str | None, now: str) -> bool:
    """Sets (or with None, removes) the hash of the connection's push token; False when no
    connection has this id."""
    params = {"id": connection_id, "sha256": sha256, "now": now}
    return await db.write_one(SET_PUSH_HASH, params) == 1


async def active_in_mode(db: Database, mode: str) -> list[ConnectionRow]:
    """The active connections that read the MLS in `mode` (events: those polled between
    cycles)."""
    return [from_row(ConnectionRow, r) for r in await db.fetch_all(LIST_ACTIVE_IN_MODE, (mode,))]


async def active_of_user(db: Database, user_id: str) -> list[ConnectionRow]:
    """The connections a sync of the user's connections takes (paused ones wait)."""
    return [from_row(ConnectionRow, r) for r in await db.fetch_all(LIST_ACTIVE_OF_USER, (user_id,))]


async def summaries(db: Database, now: str) -> list[dict[str, Any]]:
    """What /status shows of every connection: no secrets, no settings, one query."""
    async with db.reading() as conn:
        rows = await conn.fetch_all(SUMMARIES, (now,))
    return [dict(zip(SUMMARY_FIELDS, r, strict=True)) for r in rows]


async def set_state(
    db: Database, connection_id: str, state: str, error: str | None, now: str
) -> bool:
    async with db.transaction() as conn:
        return await set_state_in(conn, connection_id, state, error, now)


async def set_state_in(
    conn: Session, connection_id: str, state: str, error: str | None, now: str
) -> bool:
    """`set_state` inside the caller's transaction (with its event, when it comes to need
    re-authentication)."""
    if state == ConnectionState.NEEDS_REAUTH:
        await events.connection_needs_reauth(conn, connection_id, error, now)
    changed = await conn.execute(
        SET_STATE, {"id": connection_id, "state": state, "error": error, "now": now}
    )
    return changed == 1


@dataclass(frozen=True)
class Removed:
    listings: int
    live_posts: int


async def remove(
    db: Database, connection_id: str, with_listings: bool, by: str, now: str, force: bool = False
) -> Removed:
    """Removes the connection; with its listings (and their posts) only when asked. The
    audit log keeps their history.

    A live post's row is what takes it down when its listing sells, or what tells a person to:
    a connection whose listings still have live posts is removed with them only when forced.
    """
    async with db.transaction() as conn:
        count = await _count(conn, COUNT_LISTINGS, connection_id)
        if count and not with_listings:
            raise Conflict(
                f"connection {connection_id!r} still tracks {count} listing(s); remove them "
                "first, or remove it with them (--with-listings, or ?with_listings=true over HTTP)"
            )
        live = await _count(conn, COUNT_LIVE_POSTS, connection_id)
        if live and not force:
            raise Conflict(
                f"connection {connection_id!r}: {live} post(s) of its listings are still live "
                "(published, or waiting for a person to remove them by hand), and nothing would "
                "take them down once their rows are gone; remove it anyway with --force "
                "(or ?force=true over HTTP)"
            )
        await events.listings_untracked(conn, by, now, connection_id=connection_id)
        await conn.execute(DELETE_POSTS_OF, (connection_id,))
        await conn.execute(DELETE_LISTINGS_OF, (connection_id,))
        await conn.execute(DELETE_LEASE, (connection_id,))
        if await conn.execute(DELETE, (connection_id,)) != 1:
            raise NotFound("no MLS connection has this id")
    return Removed(count, live)


async def _count(conn: Session, query: str, connection_id: str) -> int:
    row = await conn.fetch_one(query, (connection_id,))
    return int(row[0]) if row else 0


async def save_cursor(conn: Session, connection_id: str, cursor: str, now: str) -> None:
    """Called inside the transaction that applies the page, so both commit together."""
    await save_cursors(conn, [(connection_id, cursor, now)])


async def save_cursors(conn: Writes, cursors: Sequence[tuple[str, str, str]]) -> None:
    """(connection id, cursor, now) for each; `save_cursor` for several pages at once."""
    if cursors:
        await conn.execute_many(
            SAVE_CURSOR, [{"id": i, "cursor": c, "now": now} for i, c, now in cursors]
        )


async def mark_reconciled(db: Database, connection_id: str, at: str) -> None:
    async with db.transaction() as conn:
        await mark_reconciled_in(conn, [(connection_id, at)])


async def mark_reconciled_in(conn: Writes, reconciled: Sequence[tuple[str, str]]) -> None:
    """(connection id, when its full pass started) for each, inside the caller's transaction."""
    if reconciled:
        await conn.execute_many(MARK_RECONCILED, [{"id": i, "at": at} for i, at in reconciled])


async def mark_synced(
    conn: Writes, synced: Sequence[tuple[int, str, str, str, str | None]]
) -> None:
    """(run id, connection id, when it ended, when it began, its error or None) for each;
    inside the transaction that records the connections' part of the run."""
    if synced:
        await conn.execute_many(
            MARK_SYNCED,
            [
                {"run_id": r, "id": i, "at": at, "started": started, "error": error}
                for r, i, at, started, error in synced
            ],
        )


async def all_secrets(conn: Session) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in await conn.fetch_all(ALL_SECRETS)]


async def set_secret(conn: Session, connection_id: str, secret: str) -> None:
    await conn.execute(SET_SECRET, (secret, connection_id))


async def count_by_state(db: Database) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in await db.fetch_all(COUNT_BY_STATE)}


_MATCHING = """
FROM mls_connections
WHERE (CAST(:state AS TEXT) IS NULL OR state = :state)
  AND (CAST(:user AS TEXT) IS NULL OR user_id = :user)
"""
PAGE = f"""
SELECT * {_MATCHING} AND (CAST(:after AS TEXT) IS NULL OR id > :after) ORDER BY id LIMIT :limit
"""
COUNT = f"SELECT count(*) {_MATCHING}"


CONNECTIONS = Collection(ConnectionRow, PAGE, COUNT)
