"""The mail outbox (migration 8): messages to send, a sale's message held until its run ends,
items of daily digests, and the mail worker's cursor in the event log (docs/email.md).

Functions that take a connection run inside the mail worker's transactions (the one that
moves its cursor); those that take the database are one statement each.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.store import events, meta
from daemon.store.database import Database, delete_in_batches
from daemon.store.dialect import Sql, both, json_values
from daemon.store.session import Session

CURSOR_KEY = "mail_cursor"
CURSOR = "SELECT value FROM meta WHERE key = 'mail_cursor'"
RECIPIENTS = """
SELECT id, email, time_zone, notify_events, notify_mode FROM users
WHERE email IS NOT NULL AND trim(email) != '' AND notify_events != '[]'
"""
INSERT = """
INSERT INTO mail_outbox (user_id, recipient, kind, status, run_id, listing_id, facts, event_ids,
    subject, body, next_attempt_at, created_at)
VALUES (:user_id, :recipient, :kind, :status, :run_id, :listing_id, :facts, :event_ids,
    :subject, :body, :now, :now)
RETURNING id
"""
JOIN_HELD = both(
    """
UPDATE mail_outbox SET event_ids = {appended}
WHERE status = 'held' AND user_id = :user_id AND listing_id = :listing_id
""",
    appended=Sql(
        "json_insert(event_ids, '$[#]', :event_id)",
        "CAST(CAST(event_ids AS jsonb) || to_jsonb(CAST(:event_id AS bigint)) AS text)",
    ),
)
# Held for a run that has ended, or is gone.
RELEASABLE = """
SELECT id, listing_id, facts FROM mail_outbox o
WHERE o.status = 'held'
  AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.id = o.run_id AND r.outcome = 'running')
ORDER BY o.id
"""
RELEASE = """
UPDATE mail_outbox SET status = 'pending', subject = :subject, body = :body,
    next_attempt_at = :now
WHERE id = :id AND status = 'held'
"""
POSTS_OF_LISTING = """
SELECT a.platform, p.platform_post_id, p.permalink, p.status, p.next_attempt_at
FROM social_posts p JOIN platform_accounts a ON a.id = p.account_id
WHERE p.listing_id = ? ORDER BY p.id
"""
ADD_DIGEST_ITEM = """
INSERT INTO mail_digest_items (user_id, recipient, event_id, type, data, due_at)
VALUES (:user_id, :recipient, :event_id, :type, :data, :due_at)
ON CONFLICT DO NOTHING
"""
DUE_DIGEST_ITEMS = """
SELECT id, user_id, recipient, event_id, type, data, due_at FROM mail_digest_items
WHERE message_id IS NULL AND due_at <= ? ORDER BY user_id, event_id
"""
DIGESTED = "UPDATE mail_digest_items SET message_id = ? WHERE id = ?"
DUE = both(
    """
SELECT id, user_id, recipient, kind, event_ids, subject, body, attempts, created_at
FROM mail_outbox
WHERE status = 'pending' AND next_attempt_at <= :now AND id NOT IN ({busy})
ORDER BY next_attempt_at, id LIMIT :limit
""",
    busy=json_values(":busy", as_type="bigint"),
)
SENT = "UPDATE mail_outbox SET status = 'sent', sent_at = :now WHERE id = :id"
RETRY = """
UPDATE mail_outbox SET attempts = :attempts, next_attempt_at = :next_at, last_error = :error
WHERE id = :id
"""
FAILED = """
UPDATE mail_outbox SET status = 'failed', attempts = :attempts, last_error = :error,
    sent_at = NULL
WHERE id = :id
"""
TIME_ZONE = "SELECT time_zone FROM users WHERE id = ?"
ANY_DIGEST_DUE = "SELECT 1 FROM mail_digest_items WHERE message_id IS NULL AND due_at <= ? LIMIT 1"
WAITING = "SELECT count(*) FROM mail_outbox WHERE status IN ('held', 'pending')"


@dataclass(frozen=True)
class Recipient:
    user_id: str
    email: str
    time_zone: str
    notify_events: tuple[str, ...]
    digest: bool  # notify_mode 'daily_digest'


@dataclass(frozen=True)
class Outgoing:
    """A pending message, as the sender reads it."""

    id: int
    user_id: str
    recipient: str
    kind: str
    event_ids: list[int]
    subject: str
    body: str
    attempts: int
    created_at: str


@dataclass(frozen=True)
class DigestItemRow:
    id: int
    user_id: str
    recipient: str
    event_id: int
    type: str
    data: dict[str, Any]
    due_at: str


async def cursor(conn: Session) -> int:
    row = await conn.fetch_one(CURSOR)
    return int(row[0]) if row else 0


# The first start: from the end of the log as it is. Events from before mail was turned on are
# history, not news; nobody wants weeks of them at once.
START_CURSOR = both(
    f"""
INSERT INTO meta (key, value) SELECT '{CURSOR_KEY}', CAST(({{last_id}}) AS TEXT) WHERE true
ON CONFLICT DO NOTHING
""",
    last_id=events.LAST_ID,
)


FORGET_CURSOR = f"DELETE FROM meta WHERE key = '{CURSOR_KEY}'"


async def forget_cursor(db: Database) -> None:
    """Mail is off: the next start begins at the end of the log (`start_cursor`)."""
    async with db.transaction() as conn:
        await conn.execute(FORGET_CURSOR)


async def start_cursor(db: Database) -> None:
    """Sets the cursor to the end of the log unless it was set before."""
    async with db.transaction() as conn:
        await conn.execute(START_CURSOR)


async def move_cursor(conn: Session, event_id: int) -> None:
    await meta.put(conn, CURSOR_KEY, str(event_id))


async def recipients(conn: Session) -> dict[str, Recipient]:
    """Users with an address and at least one event type to be sent. A notify_events that is
    not a JSON list of strings sends nothing (the users surface validates it)."""
    found = {}
    for row in await conn.fetch_all(RECIPIENTS):
        try:
            chosen = json.loads(row["notify_events"])
        except ValueError:
            continue
        if isinstance(chosen, list) and all(isinstance(t, str) for t in chosen):
            found[row["id"]] = Recipient(
                row["id"],
                row["email"].strip(),
                row["time_zone"],
                tuple(chosen),
                row["notify_mode"] == "daily_digest",
            )
    return found


async def enqueue(
    conn: Session,
    to: Recipient,
    kind: str,
    event_ids: Sequence[int],
    now: str,
    subject: str | None = None,
    body: str | None = None,
    held: tuple[int | None, str, dict[str, Any]] | None = None,
) -> int:
    """A message ready to send (subject and body), or `held`: (run id, listing id, facts) of a
    sale composed once its run has ended. Its id."""
    run_id, listing_id, facts = held if held else (None, None, {})
    row = await conn.fetch_one(
        INSERT,
        {
            "user_id": to.user_id,
            "recipient": to.email,
            "kind": kind,
            "status": "held" if held else "pending",
            "run_id": run_id,
            "listing_id": listing_id,
            "facts": json.dumps(facts),
            "event_ids": json.dumps(list(event_ids)),
            "subject": subject,
            "body": body,
            "now": now,
        },
    )
    assert row is not None  # RETURNING gives the row it inserted
    return int(row[0])


async def join_held(conn: Session, user_id: str, listing_id: str, event_id: int) -> bool:
    """Adds a post event to its listing's held sale message, if there is one."""
    params = {"user_id": user_id, "listing_id": listing_id, "event_id": event_id}
    return await conn.execute(JOIN_HELD, params) > 0


async def releasable(conn: Session) -> list[tuple[int, str, dict[str, Any]]]:
    """(id, listing id, facts) of held messages whose run has ended."""
    rows = await conn.fetch_all(RELEASABLE)
    return [(int(r["id"]), str(r["listing_id"]), json.loads(r["facts"])) for r in rows]


async def release(conn: Session, message_id: int, subject: str, body: str, now: str) -> None:
    params = {"id": message_id, "subject": subject, "body": body, "now": now}
    await conn.execute(RELEASE, params)


async def posts_of_listing(conn: Session, listing_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch_all(POSTS_OF_LISTING, (listing_id,))]


async def add_digest_item(
    conn: Session, to: Recipient, event_id: int, type_: str, data: str, due_at: str
) -> None:
    params = {
        "user_id": to.user_id,
        "recipient": to.email,
        "event_id": event_id,
        "type": type_,
        "data": data,
        "due_at": due_at,
    }
    await conn.execute(ADD_DIGEST_ITEM, params)


async def due_digest_items(conn: Session, now: str) -> list[DigestItemRow]:
    return [
        DigestItemRow(
            int(r["id"]),
            r["user_id"],
            r["recipient"],
            int(r["event_id"]),
            r["type"],
            json.loads(r["data"]),
            r["due_at"],
        )
        for r in await conn.fetch_all(DUE_DIGEST_ITEMS, (now,))
    ]


async def mark_digested(conn: Session, item_ids: Sequence[int], message_id: int) -> None:
    await conn.execute_many(DIGESTED, [(message_id, i) for i in item_ids])


async def due(db: Database, now: str, busy: Collection[int], limit: int) -> list[Outgoing]:
    """Pending messages whose time has come, but for those being sent (`busy`)."""
    params = {"now": now, "busy": json.dumps(sorted(busy)), "limit": limit}
    async with db.reading() as conn:
        rows = await conn.fetch_all(DUE, params)
    return [
        Outgoing(
            int(r["id"]),
            r["user_id"],
            r["recipient"],
            r["kind"],
            [int(i) for i in json.loads(r["event_ids"])],
            r["subject"] or "",
            r["body"] or "",
            int(r["attempts"]),
            r["created_at"],
        )
        for r in rows
    ]


async def mark_sent(db: Database, message_id: int, now: str) -> None:
    await db.write_one(SENT, {"id": message_id, "now": now})


async def mark_retry(
    db: Database, message_id: int, attempts: int, next_at: str, error: str
) -> None:
    params = {"id": message_id, "attempts": attempts, "next_at": next_at, "error": error}
    await db.write_one(RETRY, params)


async def mark_failed(db: Database, message_id: int, attempts: int, error: str) -> None:
    await db.write_one(FAILED, {"id": message_id, "attempts": attempts, "error": error})


async def waiting(db: Database) -> int:
    """Messages not sent yet: held or pending."""
    row = await db.fetch_one(WAITING)
    return int(row[0]) if row else 0


async def caught_up(db: Database) -> bool:
    """The worker has read the whole event log into messages and sent every one of them."""
    async with db.reading() as conn:
        read_to = await cursor(conn)
        last = await events.last_id_in(conn)
    return read_to >= last and await waiting(db) == 0


async def time_zone(conn: Session, user_id: str) -> str:
    rows = list(await conn.fetch_all(TIME_ZONE, (user_id,)))
    return str(rows[0][0]) if rows else "UTC"


async def any_releasable(db: Database) -> bool:
    return await db.fetch_one(RELEASABLE + " LIMIT 1") is not None


async def any_digest_due(db: Database, now: str) -> bool:
    return await db.fetch_one(ANY_DIGEST_DUE, (now,)) is not None


# Messages done with (sent or given up) before the retention, and the digest items a digest
# already reported; what is held or pending stays whatever its age.
PRUNE_OUTBOX = """
DELETE FROM mail_outbox WHERE id IN (
    SELECT id FROM mail_outbox
    WHERE status IN ('sent', 'failed') AND coalesce(sent_at, created_at) < :before
    LIMIT :batch)
"""
PRUNE_DIGEST_ITEMS = """
DELETE FROM mail_digest_items WHERE id IN (
    SELECT id FROM mail_digest_items
    WHERE message_id IS NOT NULL AND due_at < :before LIMIT :batch)
"""


async def prune(db: Database, before: str, batch: int = 5000) -> int:
    """Deletes what mail is done with from before `before`; returns how many rows went."""
    params = {"before": before}
    outbox = await delete_in_batches(db, PRUNE_OUTBOX, params, batch)
    return outbox + await delete_in_batches(db, PRUNE_DIGEST_ITEMS, params, batch)
