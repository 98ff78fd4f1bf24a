"""Small facts about the database itself, such as the encryption key check."""

from __future__ import annotations

import aiosqlite

from daemon.store.database import Database

GET = "SELECT value FROM meta WHERE key = ?"
PUT = """
INSERT INTO meta (key, value) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""

KEY_CHECK = "key_check"


async def get(db: Database, key: str) -> str | None:
    async with db.reading() as conn, conn.execute(GET, (key,)) as cur:
        row = await cur.fetchone()
    return str(row[0]) if row else None


async def put(conn: aiosqlite.Connection, key: str, value: str) -> None:
    await conn.execute(PUT, (key, value))
