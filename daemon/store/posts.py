"""Social posts, as far as the sync engine needs them: which ones are due to come down.

Level-triggered (invariant 2): this is asked every cycle, not only when a status changes, so a
crash or a failed delete is simply found again next time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from daemon.models import LocalStatus
from daemon.store.database import Database
from daemon.store.records import DuePost, from_row

DUE = """
SELECT p.id, p.listing_id, p.account_id, p.platform_post_id, l.status AS listing_status
FROM social_posts p JOIN listings l ON l.id = p.listing_id
WHERE p.status = 'published'
  AND l.status IN (SELECT value FROM json_each(:statuses))
  AND (p.next_attempt_at IS NULL OR p.next_attempt_at <= :now)
ORDER BY p.account_id, p.id
"""
COUNT_BY_STATUS = "SELECT status, count(*) FROM social_posts GROUP BY 1 ORDER BY 1"


async def due_for_unpublish(
    db: Database, unpublish_on: Iterable[LocalStatus], now: str
) -> list[DuePost]:
    params = {"statuses": json.dumps([str(s) for s in unpublish_on]), "now": now}
    async with db.reading() as conn, conn.execute(DUE, params) as cur:
        return [from_row(DuePost, r) for r in await cur.fetchall()]


async def count_by_status(db: Database) -> dict[str, int]:
    async with db.reading() as conn, conn.execute(COUNT_BY_STATUS) as cur:
        return {r[0]: int(r[1]) for r in await cur.fetchall()}


ADD_PUBLISHED = """
INSERT INTO social_posts (id, listing_id, account_id, platform_post_id, status, published_at,
    created_at, updated_at)
VALUES (:id, :listing_id, :account_id, :platform_post_id, 'published', :now, :now, :now)
"""
ADD_ACCOUNT = """
INSERT INTO platform_accounts (id, user_id, platform, connected_via, access_token_encrypted,
    created_at, updated_at)
VALUES (:id, :user_id, :platform, :connected_via, :token, :now, :now)
"""


async def add_account(
    db: Database,
    account_id: str,
    user_id: str,
    platform: str,
    token_encrypted: str,
    now: str,
    connected_via: str | None = None,
) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            ADD_ACCOUNT,
            {
                "id": account_id,
                "user_id": user_id,
                "platform": platform,
                "connected_via": connected_via,
                "token": token_encrypted,
                "now": now,
            },
        )


async def add_published(
    db: Database, post_id: str, listing_id: str, account_id: str, platform_post_id: str, now: str
) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            ADD_PUBLISHED,
            {
                "id": post_id,
                "listing_id": listing_id,
                "account_id": account_id,
                "platform_post_id": platform_post_id,
                "now": now,
            },
        )
