"""The event log: one row per committed change, written inside the change's own transaction.

Every function that writes here takes the caller's open transaction (`conn`): an event exists
if and only if its change committed (invariant 8). Each event's `data` is built in SQL from the
rows as the change left them, in one statement for any number of events, and holds only what a
receiver needs: ids, statuses, MLS values, links; never a secret. docs/events.md describes the
types and their data.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio

from daemon.enums import EventType
from daemon.store.database import Database, delete_in_batches
from daemon.store.dialect import LEAST, Sql, both, json_objects, json_values
from daemon.store.records import EventRow, from_row
from daemon.store.session import Session, Writes

# A listing as every listing and post event shows it (`l` is its row).
_LISTING = """json_object('id', l.id, 'key', l.listing_key, 'connection_id', l.connection_id,
    'user_id', l.user_id, 'status', l.status, 'mls_standard_status', l.mls_standard_status,
    'mls_status', l.mls_status, 'mls_modified_at', l.mls_modified_at,
    'url', '/v1/listings/' || l.id)"""
# A post (`p`, its account `a`).
_POST = """json_object('id', p.id, 'platform', a.platform, 'account_id', p.account_id,
    'platform_post_id', p.platform_post_id, 'permalink', p.permalink, 'status', p.status,
    'attempts', p.attempts, 'note', p.note, 'last_error', p.last_error,
    'next_attempt_at', p.next_attempt_at, 'url', '/v1/posts/' || p.id)"""

LISTING_CHANGED = json_objects(
    f"""
INSERT INTO events (type, user_id, connection_id, listing_id, run_id, data, created_at)
SELECT :type, l.user_id, l.connection_id, l.id, :run_id,
    json_object('listing', {_LISTING},
        'change', json_object('from', CAST(:from_status AS TEXT), 'to', CAST(:to_status AS TEXT),
            'reason', CAST(:reason AS TEXT)),
        'run_id', CAST(:run_id AS BIGINT)),
    :now
FROM listings l WHERE l.id = :id
"""
)
# Before the listings go: `by` says who stopped tracking them.
LISTINGS_UNTRACKED = json_objects(
    f"""
INSERT INTO events (type, user_id, connection_id, listing_id, data, created_at)
SELECT 'listing.removed', l.user_id, l.connection_id, l.id,
    json_object('listing', {_LISTING},
        'change', json_object('from', l.status, 'to', NULL, 'reason', 'untracked'),
        'by', CAST(:by AS TEXT)),
    :now
FROM listings l WHERE (l.id = :listing_id OR l.connection_id = :connection_id)
ORDER BY l.id
"""
)
POST_CHANGED = json_objects(
    f"""
INSERT INTO events (type, user_id, connection_id, listing_id, post_id, account_id, data,
    created_at)
SELECT :type, l.user_id, l.connection_id, l.id, p.id, p.account_id,
    json_object('post', {_POST}, 'listing', {_LISTING}),
    :now
FROM social_posts p JOIN listings l ON l.id = p.listing_id
    JOIN platform_accounts a ON a.id = p.account_id
WHERE p.id = :id
"""
)
# Only when the state changes: run before the update, on a row not yet in that state.
CONNECTION_NEEDS_REAUTH = json_objects(
    """
INSERT INTO events (type, user_id, connection_id, data, created_at)
SELECT 'connection.needs_reauth', c.user_id, c.id,
    json_object('connection', json_object('id', c.id, 'name', c.name, 'base_url', c.base_url,
        'url', '/v1/mls-connections/' || c.id),
        'reason', CAST(:reason AS TEXT), 'what_to_do', CAST(:what_to_do AS TEXT)),
    :now
FROM mls_connections c WHERE c.id = :id AND c.state != 'needs_reauth'
"""
)
ACCOUNT_NEEDS_REAUTH = json_objects(
    """
INSERT INTO events (type, user_id, account_id, data, created_at)
SELECT 'account.needs_reauth', a.user_id, a.id,
    json_object('account', json_object('id', a.id, 'platform', a.platform,
        'user_id', a.user_id, 'url', '/v1/accounts/' || a.id),
        'reason', CAST(:reason AS TEXT), 'what_to_do', CAST(:what_to_do AS TEXT)),
    :now
FROM platform_accounts a WHERE a.id = :id AND a.state != 'needs_reauth'
"""
)
RUN_FINISHED = json_objects(
    """
INSERT INTO events (type, run_id, data, created_at)
SELECT 'run.finished', r.id,
    json_object('run', json_object('id', r.id, 'trigger', r.trigger, 'scope', r.scope,
        'outcome', r.outcome, 'started_at', r.started_at, 'finished_at', r.finished_at,
        'connections', r.connections, 'listings_checked', r.listings_checked,
        'status_changes', r.status_changes, 'posts_unpublished', r.posts_unpublished,
        'posts_failed', r.posts_failed, 'posts_manual', r.posts_manual, 'errors', r.errors,
        'warnings', r.warnings, 'url', '/v1/runs/' || r.id)),
    :now
FROM sync_runs r WHERE r.id = :id AND r.outcome != 'running'
"""
)

# Only the endpoint's own events (`data` names its id): a receiver that is down hears of its
# disabling through another endpoint, the event feed or the log, never through itself
# (daemon/outbound/selection.py). Before the endpoint's row says disabled.
ENDPOINT_DISABLED = json_objects(
    """
INSERT INTO events (type, user_id, data, created_at)
SELECT 'webhook.endpoint_disabled', e.user_id,
    json_object('endpoint', json_object('id', e.id, 'description', e.description,
        'user_id', e.user_id, 'failing_since', e.failing_since,
        'url', '/v1/webhooks/' || e.id),
        'reason', CAST(:reason AS TEXT), 'what_to_do', CAST(:what_to_do AS TEXT)),
    :now
FROM webhook_endpoints e WHERE e.id = :id AND e.enabled = 1
"""
)

ENDPOINT_WHAT_TO_DO = (
    "fix the receiver, then enable the endpoint again (POST /v1/webhooks/{id}/enable, or "
    "`mls-sync webhooks enable {id}`); the delivery it gave up on can be sent again with replay"
)
CONNECTION_WHAT_TO_DO = (
    "the MLS refused this connection's credentials: give it new ones "
    "(PUT /v1/mls-connections/{id}, or `mls-sync connections add` with the same id); "
    "it is synced again once they are saved"
)
ACCOUNT_WHAT_TO_DO = (
    "the platform refused this account's token: sign in to the platform again and save the new "
    "token (PUT /v1/accounts/{id}, or `mls-sync accounts add` with the same id); its posts are "
    "taken down once it is saved"
)


@dataclass(frozen=True, slots=True)
class ListingChanged:
    """A status change as the sync wrote it (after the listing's row was updated)."""

    type: EventType
    listing_id: str
    from_status: str | None
    to_status: str
    reason: str  # the audit row's event: changed, restored, removed, first_seen
    run_id: int | None
    at: str


async def listings_changed(conn: Writes, changes: Sequence[ListingChanged]) -> None:
    if not changes:
        return
    await conn.execute_many(
        LISTING_CHANGED,
        [
            {
                "type": c.type,
                "id": c.listing_id,
                "from_status": c.from_status,
                "to_status": c.to_status,
                "reason": c.reason,
                "run_id": c.run_id,
                "now": c.at,
            }
            for c in changes
        ],
    )


async def listings_untracked(
    conn: Session,
    by: str,
    at: str,
    listing_id: str | None = None,
    connection_id: str | None = None,
) -> None:
    """One `listing.removed` per listing about to be deleted: one listing, or a connection's."""
    await conn.execute(
        LISTINGS_UNTRACKED,
        {"by": by, "now": at, "listing_id": listing_id, "connection_id": connection_id},
    )


async def posts_changed(conn: Session, changes: Sequence[tuple[EventType, str]], at: str) -> None:
    """(type, post id) for posts whose rows already say what happened."""
    if changes:
        await conn.execute_many(
            POST_CHANGED, [{"type": t, "id": post_id, "now": at} for t, post_id in changes]
        )


async def connection_needs_reauth(
    conn: Session, connection_id: str, reason: str | None, at: str
) -> None:
    """Call before the connection's state is set: only a change of state is an event."""
    what = CONNECTION_WHAT_TO_DO.replace("{id}", connection_id)
    params = {"id": connection_id, "reason": reason, "what_to_do": what, "now": at}
    await conn.execute(CONNECTION_NEEDS_REAUTH, params)


async def account_needs_reauth(conn: Session, account_id: str, reason: str | None, at: str) -> None:
    """Call before the account's state is set: only a change of state is an event."""
    what = ACCOUNT_WHAT_TO_DO.replace("{id}", account_id)
    params = {"id": account_id, "reason": reason, "what_to_do": what, "now": at}
    await conn.execute(ACCOUNT_NEEDS_REAUTH, params)


async def endpoint_disabled(conn: Session, endpoint_id: int, reason: str, at: str) -> None:
    """Call before the endpoint's row is disabled: only a change of state is an event."""
    what = ENDPOINT_WHAT_TO_DO.replace("{id}", str(endpoint_id))
    params = {"id": endpoint_id, "reason": reason, "what_to_do": what, "now": at}
    await conn.execute(ENDPOINT_DISABLED, params)


async def runs_finished(conn: Session, run_ids: Sequence[int], at: str) -> None:
    """After the runs' outcome is written."""
    if run_ids:
        await conn.execute_many(RUN_FINISHED, [{"id": i, "now": at} for i in run_ids])


# Reading -----------------------------------------------------------------------------------

AFTER = both(
    """
SELECT * FROM events
WHERE id > :after AND id <= :upto
  AND (CAST(:types AS TEXT) IS NULL OR type IN ({types}))
  AND (CAST(:user_id AS TEXT) IS NULL OR user_id = :user_id)
ORDER BY id LIMIT :limit
""",
    types=json_values(":types"),
)
# The last id given, pruned or not. SQLite's AUTOINCREMENT keeps it in sqlite_sequence. On
# PostgreSQL it is the newest event kept (pruning always keeps it: PRUNE_UPTO), not the
# sequence's value: that moves before its event commits, and a reader moving past an id not
# yet committed would skip that event for good.
LAST_ID = Sql(
    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
    "SELECT coalesce(max(id), 0) FROM events",
)
FIRST_ID = "SELECT min(id) FROM events"
# Pruning takes the oldest ids only, never a hole, so that the first id kept tells a reader
# whether it missed any (ops/events.py): up to the last id before the first event inside the
# retention (an event's time is when its change was written, not quite in id order), and
# never an event a webhook endpoint still owes, enabled or not (past its cursor, or with a
# delivery pending: a long-dead endpoint holds the log until it is removed), nor, while mail
# is on, one the mail worker has not read. The newest event always stays: on PostgreSQL it is
# what tells the last id given (LAST_ID).
PRUNE_UPTO = both(
    """
SELECT {least}(
    coalesce((SELECT min(id) FROM events WHERE created_at >= :before),
             (SELECT coalesce(max(id), 0) FROM events)) - 1,
    (SELECT coalesce(min(cursor), 9223372036854775807) FROM webhook_endpoints),
    (SELECT coalesce(min(event_id) - 1, 9223372036854775807)
     FROM webhook_deliveries WHERE state = 'pending'),
    CASE WHEN :mail_on
         THEN coalesce((SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'mail_cursor'), 0)
         ELSE 9223372036854775807 END)
""",
    least=LEAST,
)
PRUNE = both(
    """
DELETE FROM events WHERE id IN (
    SELECT id FROM events WHERE id <= ({upto}) ORDER BY id LIMIT :batch)
""",
    upto=PRUNE_UPTO,
)
# After pruning, the oldest event left is past the retention only if something holds it: the
# endpoints that have not taken it yet, or have it pending. (The oldest event is one lookup;
# the newest event past the retention would be a scan of the whole log.)
HELD_FOR = """
SELECT e.id FROM webhook_endpoints e,
    (SELECT id, created_at FROM events WHERE id = (SELECT min(id) FROM events)) AS oldest
WHERE oldest.created_at < :before
  AND (e.cursor < oldest.id OR EXISTS (
      SELECT 1 FROM webhook_deliveries d
      WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.event_id = oldest.id))
ORDER BY e.id
"""


@dataclass(frozen=True)
class Read:
    rows: list[EventRow]
    upto: int  # every event up to this id was committed when the rows were read


async def after(
    db: Database,
    after_id: int,
    types: Sequence[str] | None,
    user_id: str | None,
    limit: int,
) -> Read:
    """The events after `after_id`, oldest first, of `types` (None: all) and `user_id`.

    Ids are given by the one writer in commit order, so once `upto` is the last id given, no
    event at or below it can commit later: a reader that moves on to `upto` (when fewer than
    `limit` rows came back) skips nothing, and never rereads the ones its filters passed over.
    """
    async with db.reading() as conn:
        upto = int(next(iter(await conn.fetch_all(LAST_ID)))[0])
        params = {
            "after": after_id,
            "upto": upto,
            "types": json.dumps(list(types)) if types is not None else None,
            "user_id": user_id,
            "limit": limit,
        }
        rows = await conn.fetch_all(AFTER, params)
    return Read([from_row(EventRow, r) for r in rows], upto)


async def last_id(db: Database) -> int:
    row = await db.fetch_one(LAST_ID)
    return int(row[0]) if row else 0


async def last_id_in(conn: Session) -> int:
    """`last_id` inside the caller's transaction."""
    row = await conn.fetch_one(LAST_ID)
    return int(row[0]) if row else 0


async def first_id(db: Database) -> int | None:
    """The oldest event still kept (older ones were pruned), or None when there is none."""
    row = await db.fetch_one(FIRST_ID)
    return int(row[0]) if row and row[0] is not None else None


async def prune(db: Database, before: str, mail_on: bool = False, batch: int = 5000) -> int:
    """Deletes events created before `before` that no webhook endpoint still owes (nor the
    mail worker, when `mail_on`), a batch per transaction (the writer is never held up
    long); returns how many went."""
    return await delete_in_batches(db, PRUNE, {"before": before, "mail_on": mail_on}, batch)


async def held_for(db: Database, before: str) -> list[int]:
    """The webhook endpoints that keep events older than `before` from being pruned."""
    async with db.reading() as conn:
        rows = await conn.fetch_all(HELD_FOR, {"before": before})
    return [int(r[0]) for r in rows]


# Waits until an event after the given id may exist, or the given seconds have passed; False
# when waiting is over for good (the daemon stops): the caller answers with what it has.
# The daemon's is EventWatch.wait_after (daemon/service/event_watch.py).
Waiter = Callable[[int, float], Awaitable[bool]]
POLL_EVERY = 0.2


def polling_wake(db: Database) -> Waiter:
    """A wait for an event after a given id, or for some seconds (as the daemon's EventWatch
    waits), where no watch runs: the CLI, tests. The last id is read every POLL_EVERY seconds
    at most, however many wait on it."""
    newest = {"id": 0, "read_at": -POLL_EVERY}

    async def newest_id() -> int:
        if anyio.current_time() - newest["read_at"] >= POLL_EVERY:
            newest["id"] = await last_id(db)
            newest["read_at"] = anyio.current_time()
        return int(newest["id"])

    async def wait(after_id: int, seconds: float) -> bool:
        deadline = anyio.current_time() + seconds
        while anyio.current_time() < deadline:
            if await newest_id() > after_id:
                return True
            await anyio.sleep(POLL_EVERY)
        return True

    return wait
