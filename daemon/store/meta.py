"""Small facts about the database itself, such as the encryption key check."""

from __future__ import annotations

from daemon.store.database import Database
from daemon.store.session import Session

GET = "SELECT value FROM meta WHERE key = ?"
PUT = """
INSERT INTO meta (key, value) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""

KEY_CHECK = "key_check"


async def get(db: Database, key: str) -> str | None:
    row = await db.fetch_one(GET, (key,))
    return str(row[0]) if row else None


async def put(conn: Session, key: str, value: str) -> None:
    await conn.execute(PUT, (key, value))
