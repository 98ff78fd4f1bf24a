"""Users: who owns connections, listings and platform accounts, and how they are notified."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from daemon.errors import Conflict, NotFound
from daemon.specs import UserSpec
from daemon.store.database import Database
from daemon.store.dialect import both, json_values
from daemon.store.paging import Collection
from daemon.store.records import UserRow, from_row

# The user that owns what is given no user (migration 5 made it; the columns default to it).
DEFAULT_USER = "default"

UPSERT = """
INSERT INTO users (id, display_name, email, time_zone, notify_events, notify_mode,
    created_at, updated_at)
VALUES (:id, :display_name, :email, :time_zone, :notify_events, :notify_mode, :now, :now)
ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, email = excluded.email,
    time_zone = excluded.time_zone, notify_events = excluded.notify_events,
    notify_mode = excluded.notify_mode, updated_at = excluded.updated_at
"""
GET = "SELECT * FROM users WHERE id = ?"
EXISTING = both("SELECT id FROM users WHERE id IN ({ids})", ids=json_values("?"))
OWNED = """
SELECT (SELECT count(*) FROM mls_connections WHERE user_id = :id),
       (SELECT count(*) FROM listings WHERE user_id = :id),
       (SELECT count(*) FROM platform_accounts WHERE user_id = :id),
       (SELECT count(*) FROM webhook_endpoints WHERE user_id = :id)
"""
DELETE = "DELETE FROM users WHERE id = ?"


async def upsert(db: Database, spec: UserSpec, now: str) -> bool:
    """Creates or replaces the user; returns whether it is new."""
    params = spec.model_dump(mode="json")
    params.update(notify_events=json.dumps(params["notify_events"]), now=now)
    async with db.transaction() as conn:
        existed = await conn.fetch_one(GET, (spec.id,)) is not None
        await conn.execute(UPSERT, params)
    return not existed


async def get(db: Database, user_id: str) -> UserRow | None:
    row = await db.fetch_one(GET, (user_id,))
    return from_row(UserRow, row) if row else None


async def existing(db: Database, user_ids: Iterable[str]) -> set[str]:
    """Which of `user_ids` are users."""
    rows = await db.fetch_all(EXISTING, (json.dumps(sorted(set(user_ids))),))
    return {r[0] for r in rows}


@dataclass(frozen=True)
class Owned:
    connections: int
    listings: int
    accounts: int
    endpoints: int  # webhook endpoints that take only this user's events

    def __bool__(self) -> bool:
        return bool(self.connections or self.listings or self.accounts or self.endpoints)


async def remove(db: Database, user_id: str) -> None:
    """Refused while the user owns anything: its records would name a user that is gone."""
    if user_id == DEFAULT_USER:
        raise Conflict(
            "the default user owns what is given no user and cannot be removed; "
            "change its name or e-mail with `mls-sync users add --id default ...` instead"
        )
    async with db.transaction() as conn:
        row = await conn.fetch_one(OWNED, {"id": user_id})
        owned = Owned(*row) if row else Owned(0, 0, 0, 0)
        if owned:
            raise Conflict(
                f"this user still owns {owned.connections} MLS connection(s), "
                f"{owned.listings} listing(s) and {owned.accounts} platform account(s), and "
                f"{owned.endpoints} webhook endpoint(s) take only their events: give them to "
                "another user (add them again with --user) or remove them first (list them "
                "with --user ID; `mls-sync webhooks list`)"
            )
        if await conn.execute(DELETE, (user_id,)) != 1:
            raise NotFound("no user has this id")


_MATCHING = "FROM users WHERE 1 = 1"
PAGE = f"""
SELECT * {_MATCHING} AND (CAST(:after AS TEXT) IS NULL OR id > :after) ORDER BY id LIMIT :limit
"""
COUNT = f"SELECT count(*) {_MATCHING}"


USERS = Collection(UserRow, PAGE, COUNT)
