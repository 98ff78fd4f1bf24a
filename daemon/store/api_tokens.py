"""Named API tokens: only their SHA-256 is stored; a revoked token keeps its row."""

from __future__ import annotations

from daemon.store.database import Database
from daemon.store.records import ApiTokenRow, from_row

COLUMNS = "id, name, scope, created_at, last_used_at, revoked_at"
INSERT = f"""
INSERT INTO api_tokens (name, scope, token_sha256, created_at)
VALUES (:name, :scope, :sha256, :now)
ON CONFLICT (name) DO NOTHING
RETURNING {COLUMNS}
"""
GET = f"SELECT {COLUMNS} FROM api_tokens WHERE name = ?"
LIST = f"SELECT {COLUMNS} FROM api_tokens ORDER BY name"
LIVE_BY_HASH = f"SELECT {COLUMNS} FROM api_tokens WHERE token_sha256 = ? AND revoked_at IS NULL"
ANY_LIVE = "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL)"
REVOKE = "UPDATE api_tokens SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL"
TOUCH = "UPDATE api_tokens SET last_used_at = :now WHERE id = :id"


async def create(db: Database, name: str, scope: str, sha256: str, now: str) -> ApiTokenRow | None:
    """The new token's row, or None when the name is taken (a revoked token keeps its name)."""
    params = {"name": name, "scope": scope, "sha256": sha256, "now": now}
    async with db.transaction() as conn:
        rows = list(await conn.fetch_all(INSERT, params))
    return from_row(ApiTokenRow, rows[0]) if rows else None


async def get(db: Database, name: str) -> ApiTokenRow | None:
    row = await db.fetch_one(GET, (name,))
    return from_row(ApiTokenRow, row) if row else None


async def list_all(db: Database) -> list[ApiTokenRow]:
    return [from_row(ApiTokenRow, r) for r in await db.fetch_all(LIST)]


async def live_by_hash(db: Database, sha256: str) -> ApiTokenRow | None:
    """The token with this hash, unless it was revoked."""
    row = await db.fetch_one(LIVE_BY_HASH, (sha256,))
    return from_row(ApiTokenRow, row) if row else None


async def any_live(db: Database) -> bool:
    row = await db.fetch_one(ANY_LIVE)
    return bool(row and row[0])


async def revoke(db: Database, name: str, now: str) -> bool:
    """Whether a live token of this name was revoked."""
    return await db.write_one(REVOKE, {"name": name, "now": now}) == 1


async def touch(db: Database, token_id: int, now: str) -> None:
    await db.write_one(TOUCH, {"id": token_id, "now": now})
