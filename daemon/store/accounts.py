"""Platform accounts (Facebook Pages, Instagram professional accounts, LinkedIn members or
organisations) and their tokens, encrypted."""

from __future__ import annotations

import json
from collections.abc import Sequence

from daemon.enums import AccountState
from daemon.errors import Conflict, NotFound
from daemon.specs import AccountSpec
from daemon.store import events
from daemon.store.database import Database
from daemon.store.dialect import both, json_values
from daemon.store.paging import Collection
from daemon.store.records import AccountRow, from_row
from daemon.store.session import Session

INSERT = """
INSERT INTO platform_accounts (id, user_id, platform, connected_via, access_token_encrypted,
    access_token_expires_at, refresh_token_encrypted, refresh_token_expires_at, client_id,
    client_secret_encrypted, created_at, updated_at)
VALUES (:id, :user_id, :platform, :connected_via, :access_token, :access_token_expires_at,
    :refresh_token, :refresh_token_expires_at, :client_id, :client_secret, :now, :now)
"""
# New tokens are the way out of needs_reauth; a disabled account stays disabled.
UPDATE = """
UPDATE platform_accounts SET user_id = :user_id,
    connected_via = :connected_via, client_id = :client_id,
    access_token_encrypted = coalesce(:access_token, access_token_encrypted),
    access_token_expires_at = :access_token_expires_at,
    refresh_token_encrypted = coalesce(:refresh_token, refresh_token_encrypted),
    refresh_token_expires_at = :refresh_token_expires_at,
    client_secret_encrypted = coalesce(:client_secret, client_secret_encrypted),
    state = CASE WHEN state = 'needs_reauth' AND :access_token IS NOT NULL THEN 'active'
                 ELSE state END,
    last_error = CASE WHEN :access_token IS NOT NULL THEN NULL ELSE last_error END,
    updated_at = :now
WHERE id = :id
"""
GET = "SELECT * FROM platform_accounts WHERE id = ?"
LIST = "SELECT * FROM platform_accounts ORDER BY id"
FOR_IDS = both("SELECT * FROM platform_accounts WHERE id IN ({ids})", ids=json_values("?"))
SET_STATE = """
UPDATE platform_accounts SET state = :state, last_error = :error, updated_at = :now WHERE id = :id
"""
SAVE_NEW_ACCESS = """
UPDATE platform_accounts SET access_token_encrypted = :token, access_token_expires_at = :expires,
    updated_at = :now WHERE id = :id
"""
COUNT_POSTS = "SELECT count(*) FROM social_posts WHERE account_id = ?"
DELETE = "DELETE FROM platform_accounts WHERE id = ?"


async def upsert(
    db: Database,
    spec: AccountSpec,
    access_token: str | None,
    refresh_token: str | None,
    client_secret: str | None,
    now: str,
) -> bool:
    """Creates or updates; tokens are already encrypted, None keeps the stored one (a new
    account must have an access token: daemon/ops/accounts.py). Returns whether it is new."""
    params = {
        **spec.model_dump(mode="json"),
        "access_token": access_token,
        "refresh_token": refresh_token,
        "client_secret": client_secret,
        "now": now,
    }
    async with db.transaction() as conn:
        existing = await conn.fetch_one(GET, (spec.id,))
        if existing is not None and existing["platform"] != spec.platform:
            # Its posts' ids are that platform's: another platform's adapter would send
            # their DELETEs where a 404 reads as "already gone" while they stay up.
            raise Conflict(
                f"account {spec.id!r} is a {existing['platform']} account, and stays one: "
                "its posts' ids are that platform's. Add the other account under another id"
            )
        await conn.execute(UPDATE if existing is not None else INSERT, params)
    return existing is None


async def get(db: Database, account_id: str) -> AccountRow | None:
    row = await db.fetch_one(GET, (account_id,))
    return from_row(AccountRow, row) if row else None


async def list_all(db: Database) -> list[AccountRow]:
    return [from_row(AccountRow, r) for r in await db.fetch_all(LIST)]


async def for_ids(db: Database, ids: Sequence[str]) -> dict[str, AccountRow]:
    return {
        r["id"]: from_row(AccountRow, r)
        for r in await db.fetch_all(FOR_IDS, (json.dumps(list(ids)),))
    }


async def set_state(db: Database, account_id: str, state: str, error: str | None, now: str) -> bool:
    async with db.transaction() as conn:
        if state == AccountState.NEEDS_REAUTH:
            await events.account_needs_reauth(conn, account_id, error, now)
        changed = await conn.execute(
            SET_STATE, {"id": account_id, "state": state, "error": error, "now": now}
        )
        return changed == 1


async def mark_needs_reauth(conn: Session, account_id: str, reason: str, now: str) -> None:
    """Inside the transaction that records the failed post, so both are written or neither."""
    await events.account_needs_reauth(conn, account_id, reason, now)
    await conn.execute(
        SET_STATE,
        {"id": account_id, "state": AccountState.NEEDS_REAUTH, "error": reason, "now": now},
    )


async def save_access_token(
    db: Database, account_id: str, token_encrypted: str, expires_at: str | None, now: str
) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            SAVE_NEW_ACCESS,
            {"id": account_id, "token": token_encrypted, "expires": expires_at, "now": now},
        )


async def remove(db: Database, account_id: str) -> None:
    async with db.transaction() as conn:
        row = await conn.fetch_one(COUNT_POSTS, (account_id,))
        if row and row[0]:
            raise Conflict(f"account {account_id!r} still has {row[0]} post(s) recorded")
        if await conn.execute(DELETE, (account_id,)) != 1:
            raise NotFound("no platform account has this id")


_MATCHING = """
FROM platform_accounts
WHERE (CAST(:platform AS TEXT) IS NULL OR platform = :platform)
  AND (CAST(:state AS TEXT) IS NULL OR state = :state)
  AND (CAST(:user AS TEXT) IS NULL OR user_id = :user)
"""
PAGE = f"""
SELECT * {_MATCHING} AND (CAST(:after AS TEXT) IS NULL OR id > :after) ORDER BY id LIMIT :limit
"""
COUNT = f"SELECT count(*) {_MATCHING}"


ACCOUNTS = Collection(AccountRow, PAGE, COUNT)
