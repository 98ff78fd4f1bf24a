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
SLOT_OFFSET = "slot_offset_seconds"
# Written only if absent: every daemon on the database reads back the first one written.
PUT_FIRST = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"


async def get(db: Database, key: str) -> str | None:
    row = await db.fetch_one(GET, (key,))
    return str(row[0]) if row else None


async def put(conn: Session, key: str, value: str) -> None:
    await conn.execute(PUT, (key, value))


async def first_value(db: Database, key: str, proposed: str) -> str:
    """The value of `key`, `proposed` when it had none: whoever writes first wins. Read
    first: a start that finds it writes nothing (no wait for another daemon's writes)."""
    value = await get(db, key)
    if value is not None:
        return value
    await db.write_one(PUT_FIRST, (key, proposed))
    value = await get(db, key)
    assert value is not None  # written just above, and never deleted
    return value
