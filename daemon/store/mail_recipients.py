"""Recipients of e-mail for the sandbox: a user row with an address and the events it is sent,
made only where none exists (the users surface owns users; this is the sandbox's seed)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from daemon.store.database import Database

ENSURE = """
INSERT OR IGNORE INTO users (id, display_name, email, notify_events, created_at, updated_at)
VALUES (:id, :name, :email, :events, :now, :now)
"""
# Only from the default user: a connection someone gave an owner keeps it.
ASSIGN_CONNECTION = """
UPDATE mls_connections SET user_id = :user_id WHERE id = :id AND user_id = 'default'
"""
ASSIGN_LISTINGS = """
UPDATE listings SET user_id = :user_id WHERE connection_id = :id AND user_id = 'default'
"""


async def ensure(
    db: Database, user_id: str, name: str, email: str, events: Sequence[str], now: str
) -> None:
    params = {"id": user_id, "name": name, "email": email, "events": json.dumps(list(events))}
    await db.write_one(ENSURE, params | {"now": now})


async def assign_connection(db: Database, connection_id: str, user_id: str) -> None:
    """The connection, and its listings, to `user_id` if they are still the default user's."""
    async with db.transaction() as conn:
        await conn.execute(ASSIGN_CONNECTION, {"id": connection_id, "user_id": user_id})
        await conn.execute(ASSIGN_LISTINGS, {"id": connection_id, "user_id": user_id})
