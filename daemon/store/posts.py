"""Social posts: which ones are due to come down, and what each attempt came to.

Level-triggered (invariant 2): `due_for_unpublish` is asked every cycle, not only when a status
changes, so a crash or a failed delete is simply found again next time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from daemon.enums import LIVE_POST_STATUSES, EventType
from daemon.errors import Conflict, NotFound
from daemon.models import LocalStatus
from daemon.specs import PostSpec
from daemon.store import events
from daemon.store.database import Database
from daemon.store.dialect import Sql, both, json_values, unindexed
from daemon.store.paging import Collection
from daemon.store.records import DuePost, PostRow, from_row
from daemon.store.session import Row, Session

_DUE_COLUMNS = """
SELECT p.id, p.listing_id, p.account_id, p.platform_post_id, l.status AS listing_status,
    p.attempts, p.delete_sent_at
FROM social_posts p JOIN listings l ON l.id = p.listing_id
"""
DUE = both(
    _DUE_COLUMNS
    + """
WHERE p.status = 'published'
  AND l.status IN ({statuses})
  AND (p.next_attempt_at IS NULL OR p.next_attempt_at <= :now)
  AND (CAST(:listing_id AS TEXT) IS NULL OR p.listing_id = :listing_id)
  AND (CAST(:connection_id AS TEXT) IS NULL OR l.connection_id = :connection_id)
  AND (CAST(:user_id AS TEXT) IS NULL
       OR l.connection_id IN (SELECT id FROM mls_connections WHERE user_id = :user_id))
ORDER BY p.account_id, p.id
""",
    statuses=json_values(":statuses"),
)
# `mls-sync unpublish --listing`: every published post of the listing, whatever its status.
PUBLISHED_OF_LISTING = (
    _DUE_COLUMNS + "WHERE p.status = 'published' AND p.listing_id = ? ORDER BY p.id"
)
INSERT = """
INSERT INTO social_posts (id, listing_id, account_id, platform_post_id, permalink, status,
    published_at, created_at, updated_at)
VALUES (:id, :listing_id, :account_id, :platform_post_id, :permalink, 'published',
    coalesce(:published_at, :now), :now, :now)
ON CONFLICT (id) DO UPDATE SET listing_id = excluded.listing_id,
    account_id = excluded.account_id, platform_post_id = excluded.platform_post_id,
    permalink = excluded.permalink, updated_at = excluded.updated_at
"""
# A PUT says the post is live. One that was taken down (or handed to a person) and is recorded
# again is published again, with a clean slate and a note of the change; the right-hand sides
# all see the row as it was.
REPUBLISH = """
UPDATE social_posts SET status = 'published', published_at = coalesce(:published_at, :now),
    unpublished_at = NULL, attempts = 0, last_error = NULL, next_attempt_at = NULL,
    delete_sent_at = NULL, note = 'published again (recorded ' || :now || '); was ' || status
        || coalesce(': ' || note, ''),
    updated_at = :now
WHERE id = :id AND status != 'published'
"""
RECORDED = "SELECT id, status, platform_post_id, listing_id FROM social_posts WHERE id = ?"
DONE = """
UPDATE social_posts SET status = 'unpublished', unpublished_at = :now, note = :note,
    attempts = attempts + 1, last_error = NULL, next_attempt_at = NULL, delete_sent_at = NULL,
    updated_at = :now
WHERE id = :id AND status = 'published'
"""
FAILED = """
UPDATE social_posts SET attempts = attempts + 1, last_error = :error, next_attempt_at = :next,
    updated_at = :now
WHERE id = :id AND status = 'published'
"""
MANUAL = """
UPDATE social_posts SET status = 'manual_required', attempts = attempts + 1, note = :note,
    last_error = NULL, next_attempt_at = NULL, delete_sent_at = NULL, updated_at = :now
WHERE id = :id AND status = 'published'
"""
# A failed attempt leaves delete_sent_at as it was: its DELETE may have gone through (a
# timeout, a 5xx after the fact), so the next try reads the post first. One the platform
# refused (throttled: it did not delete) clears it: the next try is a DELETE alone.
REFUSED = """
UPDATE social_posts SET attempts = attempts + 1, last_error = :error, next_attempt_at = :next,
    delete_sent_at = NULL, updated_at = :now
WHERE id = :id AND status = 'published'
"""
# Only for a post still as the pass's copy of it shows it: published, with the same platform id
# and the same mark. Another process may have sent a DELETE (or taken the post down) since the
# copy was read; a DELETE from the copy would then be a second one with no read first.
DELETE_SENT = both(
    """
UPDATE social_posts AS p SET delete_sent_at = :now
FROM ({copies}) AS c
WHERE p.id = c.copy_id AND {status} = 'published' AND p.platform_post_id = c.platform_post_id
  AND p.delete_sent_at IS NOT DISTINCT FROM c.seen
  AND p.listing_id = c.listing_id AND p.account_id = c.account_id
  AND (CAST(:statuses AS TEXT) IS NULL OR EXISTS (
    SELECT 1 FROM listings AS l WHERE l.id = p.listing_id AND l.status IN ({statuses})))
RETURNING id
""",
    copies=Sql(
        """SELECT json_extract(value, '$.id') AS copy_id,
        json_extract(value, '$.platform_post_id') AS platform_post_id,
        json_extract(value, '$.seen') AS seen, json_extract(value, '$.listing_id') AS listing_id,
        json_extract(value, '$.account_id') AS account_id
    FROM json_each(:copies)""",
        """SELECT value ->> 'id' AS copy_id, value ->> 'platform_post_id' AS platform_post_id,
        value ->> 'seen' AS seen, value ->> 'listing_id' AS listing_id,
        value ->> 'account_id' AS account_id
    FROM json_array_elements(CAST(:copies AS json)) AS value""",
    ),
    status=unindexed("p.status"),
    statuses=json_values(":statuses"),
)
# `+p.status`: keeps SQLite from driving the update by the status index (every published post,
# each joined to the whole batch): it looks each copy up by its id instead. With the index, a
# 10,000-post pass spent 18 s of CPU in this statement (docs/benchmarks.md, scenario C).
_WITH_PLATFORM = """
SELECT p.*, a.platform FROM social_posts p JOIN platform_accounts a ON a.id = p.account_id
"""
GET = _WITH_PLATFORM + "WHERE p.id = ?"
LIST = (
    _WITH_PLATFORM
    + """
WHERE (CAST(:listing_id AS TEXT) IS NULL OR p.listing_id = :listing_id)
  AND (CAST(:status AS TEXT) IS NULL OR p.status = :status)
ORDER BY p.listing_id, p.id LIMIT :limit
"""
)
STILL_PUBLISHED = both(
    "SELECT id, attempts FROM social_posts WHERE {status} = 'published' AND id IN ({ids})",
    status=unindexed("status"),
    ids=json_values("?"),
)  # `+status`: looked up by id, not by scanning every published post (as DELETE_SENT)
COUNT_BY_STATUS = "SELECT status, count(*) FROM social_posts GROUP BY 1 ORDER BY 1"


@dataclass(frozen=True)
class DueScope:
    """Which posts a run reconciles: all, one connection's listings, one listing's, or those
    of the listings of one user's connections."""

    connection_id: str | None = None
    listing_id: str | None = None
    user_id: str | None = None


async def due_for_unpublish(
    db: Database, unpublish_on: Iterable[LocalStatus], now: str, scope: DueScope | None = None
) -> list[DuePost]:
    scope = scope or DueScope()
    params = {
        "statuses": _as_json(unpublish_on),
        "now": now,
        "listing_id": scope.listing_id,
        "connection_id": scope.connection_id,
        "user_id": scope.user_id,
    }
    return [from_row(DuePost, r) for r in await db.fetch_all(DUE, params)]


def _as_json(statuses: Iterable[LocalStatus]) -> str:
    """Statuses as the JSON list the statements bind as one parameter."""
    return json.dumps([str(s) for s in statuses])


async def published_of_listing(db: Database, listing_id: str) -> list[DuePost]:
    return [from_row(DuePost, r) for r in await db.fetch_all(PUBLISHED_OF_LISTING, (listing_id,))]


class PostStillLive(Conflict):
    """A live post's id recorded again for another platform post."""


async def add(db: Database, spec: PostSpec, now: str) -> bool:
    """Records a published post (what the app does when it publishes one); True when the id
    is new. A post id that was taken down is published again: it comes down again when its
    listing is sold again. A published one is not re-pointed at another platform post:
    its record is what takes the live one down (PostStillLive)."""
    params = {**spec.model_dump(mode="json"), "now": now}
    async with db.transaction() as conn:
        recorded = await conn.fetch_one(RECORDED, (spec.id,))
        if recorded is not None and (refusal := _replaces_a_live_post(recorded, spec)):
            raise PostStillLive(refusal)
        await conn.execute(REPUBLISH, params)
        await conn.execute(INSERT, params)
    return recorded is None


def _replaces_a_live_post(recorded: Row, spec: PostSpec) -> str | None:
    """Why `spec` may not replace the recorded post, or None. Names the recorded post (not
    the new id: an answer never repeats input)."""
    if (
        recorded["status"] not in LIVE_POST_STATUSES
        or recorded["platform_post_id"] == spec.platform_post_id
    ):
        return None
    return (
        f"this post id is recorded for platform post {recorded['platform_post_id']}, which is "
        f"still live ({recorded['status']}): record the new post under another id (the "
        "recorded one still comes down when its listing sells, or stays listed for a person), "
        "or take the recorded one down first "
        f"(`mls-sync unpublish --listing {recorded['listing_id']}`, or `mls-sync posts "
        f"removed-by-hand {recorded['id']}` once a person did)"
    )


@dataclass(frozen=True)
class Attempt:
    """What one delete call came to, as the post's row records it."""

    post_id: str
    # refused: failed, and the platform said it did not delete (throttled)
    result: Literal["done", "failed", "refused", "manual"]
    text: str  # the note (done, manual) or the error (failed, refused)
    next_attempt_at: str | None = None  # failed, refused only


async def record_attempts(conn: Session, attempts: Sequence[Attempt], now: str) -> set[str]:
    """Writes a batch of attempts in the caller's transaction (a few statements, whatever the
    batch's size). Every update is guarded on status = 'published', so a post is never taken
    down twice; returns the ids that were still published, so each is counted once (and
    reported once in the event log: a failure only the first time)."""
    ids = json.dumps([a.post_id for a in attempts])
    tried_before = {r[0]: r[1] for r in await conn.fetch_all(STILL_PUBLISHED, (ids,))}
    fresh = set(tried_before)
    statements = {"done": DONE, "failed": FAILED, "refused": REFUSED, "manual": MANUAL}
    by_result: dict[str, list[dict[str, str | None]]] = {result: [] for result in statements}
    for a in attempts:
        row: dict[str, str | None] = {"id": a.post_id, "now": now}
        if a.result in ("failed", "refused"):
            row |= {"error": a.text, "next": a.next_attempt_at}
        else:
            row["note"] = a.text
        by_result[a.result].append(row)
    for result, sql in statements.items():
        if by_result[result]:
            await conn.execute_many(sql, by_result[result])
    reported = [
        (_EVENT_OF[a.result], a.post_id)
        for a in attempts
        if a.post_id in fresh and (a.result in ("done", "manual") or not tried_before[a.post_id])
    ]
    await events.posts_changed(conn, reported, now)
    return fresh


_EVENT_OF = {
    "done": EventType.POST_UNPUBLISHED,
    "manual": EventType.POST_NEEDS_PERSON,
    "failed": EventType.POST_RETRY_SCHEDULED,
    "refused": EventType.POST_RETRY_SCHEDULED,
}


async def mark_delete_sent(
    conn: Session,
    copies: Sequence[DuePost],
    now: str,
    listing_statuses: Iterable[LocalStatus] | None,
) -> set[str]:
    """In the caller's transaction, before the DELETEs go out: what a restart must check.
    Returns the ids marked: the posts still as their copies show them (only those may get a
    DELETE without a read), of listings whose status is one of `listing_statuses` (None:
    any)."""
    params = {
        "copies": json.dumps(
            [
                {
                    "id": c.id,
                    "platform_post_id": c.platform_post_id,
                    "seen": c.delete_sent_at,
                    "listing_id": c.listing_id,
                    "account_id": c.account_id,
                }
                for c in copies
            ]
        ),
        "now": now,
        "statuses": None if listing_statuses is None else _as_json(listing_statuses),
    }
    return {r[0] for r in await conn.fetch_all(DELETE_SENT, params)}


async def get(db: Database, post_id: str) -> PostRow | None:
    row = await db.fetch_one(GET, (post_id,))
    return from_row(PostRow, row) if row else None


async def list_some(
    db: Database, listing_id: str | None, status: str | None, limit: int
) -> list[PostRow]:
    params = {"listing_id": listing_id, "status": status, "limit": limit}
    return [from_row(PostRow, r) for r in await db.fetch_all(LIST, params)]


async def count_by_status(db: Database) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in await db.fetch_all(COUNT_BY_STATUS)}


_MATCHING = (
    _WITH_PLATFORM
    + """
WHERE (CAST(:listing_id AS TEXT) IS NULL OR p.listing_id = :listing_id)
  AND (CAST(:status AS TEXT) IS NULL OR p.status = :status)
  AND (CAST(:platform AS TEXT) IS NULL OR a.platform = :platform)
  AND (CAST(:user AS TEXT) IS NULL
       OR p.listing_id IN (SELECT id FROM listings WHERE user_id = :user))
"""
)
PAGE = _MATCHING + "AND (CAST(:after AS TEXT) IS NULL OR p.id > :after) ORDER BY p.id LIMIT :limit"
COUNT = f"SELECT count(*) FROM ({_MATCHING}) AS matching"


POSTS = Collection(PostRow, PAGE, COUNT)


DELETE = "DELETE FROM social_posts WHERE id = ?"


async def forget(db: Database, post_id: str, force: bool) -> PostRow:
    """Drops a post's record. A live post of a listing that is sold (or off the market) is what
    takes it down or tells a person to: it is never forgotten silently, only when forced."""
    async with db.transaction() as conn:
        row = await conn.fetch_one(GET, (post_id,))
        if row is None:
            raise NotFound("no post has this id")
        post = from_row(PostRow, row)
        if post.status in LIVE_POST_STATUSES and not force:
            raise Conflict(
                f"post {post_id!r} is {post.status}: its record is what takes it down when its "
                "listing sells (or lists it for a person); take it down first (unpublish), or "
                "forget it anyway with --force (?force=true over HTTP)"
            )
        await conn.execute(DELETE, (post_id,))
    return post


REMOVED_BY_HAND = """
UPDATE social_posts SET status = 'unpublished', unpublished_at = :now, next_attempt_at = NULL,
    note = :note, updated_at = :now
WHERE id = :id AND status != 'unpublished'
"""


async def mark_removed_by_hand(db: Database, post_id: str, note: str, now: str) -> bool:
    """A person took the post down on the platform. False when it was not live (already
    unpublished); NotFound when there is no such post."""
    params = {"id": post_id, "note": note, "now": now}
    async with db.transaction() as conn:
        if await conn.execute(REMOVED_BY_HAND, params):
            await events.posts_changed(conn, [(EventType.POST_UNPUBLISHED, post_id)], now)
            return True
    if await get(db, post_id) is None:
        raise NotFound("no post has this id")
    return False
