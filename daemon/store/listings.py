"""Listings: what is tracked, their statuses, and the audit log of every change."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from daemon.enums import LIVE_POSTS_SQL
from daemon.errors import Conflict, NotFound
from daemon.models import STATUS_OF, BatchPlan, Problem, event_type_of
from daemon.specs import ListingSpec
from daemon.store import events
from daemon.store.database import Database
from daemon.store.dialect import Sql, both, json_rows, json_values, rows_read
from daemon.store.group_commit import GroupWriter, group_reader
from daemon.store.paging import Collection
from daemon.store.records import (
    CurrentListing,
    ListingRow,
    StatusChangeRow,
    TierGroup,
    TrackedListing,
    checks_quietly,
    current_listing_of,
    from_row,
    tracked_listing_of,
)
from daemon.store.session import Read, Row, Session, Writes
from daemon.timestamps import is_stored_form, iso

# Re-pointed to another record (another connection, or another key): written once, used by
# each part of INSERT that a move changes.
_MOVED = """listings.connection_id IS DISTINCT FROM excluded.connection_id
   OR listings.listing_key IS DISTINCT FROM excluded.listing_key"""
# A listing given no user is its connection's user's; re-pointed to another connection
# without one, it follows its new connection; a user given is kept until another is given.
INSERT = f"""
INSERT INTO listings (id, connection_id, listing_key, status, user_id, created_at, updated_at)
VALUES (:id, :connection_id, :listing_key, :status,
    coalesce(:user_id, (SELECT user_id FROM mls_connections WHERE id = :connection_id)),
    :now, :now)
ON CONFLICT (id) DO UPDATE SET
    connection_id = excluded.connection_id,
    listing_key = excluded.listing_key,
    user_id = CASE WHEN CAST(:user_id AS TEXT) IS NOT NULL
                        OR listings.connection_id IS DISTINCT FROM excluded.connection_id
                   THEN excluded.user_id ELSE listings.user_id END,
    -- Another record now: unchecked until its MLS answers (docs/mls-reso.md "Check tiers").
    last_checked_at = CASE WHEN {_MOVED} THEN NULL ELSE listings.last_checked_at END,
    needs_read = CASE WHEN {_MOVED} THEN 1 ELSE listings.needs_read END,
    -- An event's read again was of the old record (docs/mls-reso.md "The change log").
    read_again_until = CASE WHEN {_MOVED} THEN NULL ELSE listings.read_again_until END,
    -- The old key's failing alone says nothing of the new one's (see FAILING_ALONE).
    fails_alone = CASE WHEN {_MOVED} THEN 0 ELSE listings.fails_alone END,
    updated_at = excluded.updated_at
WHERE {_MOVED}
   OR listings.user_id IS DISTINCT FROM coalesce(:user_id, listings.user_id)
"""
GET = "SELECT * FROM listings WHERE id = ?"
LIST = """
SELECT * FROM listings
WHERE (CAST(:connection_id AS TEXT) IS NULL OR connection_id = :connection_id)
  AND (CAST(:status AS TEXT) IS NULL OR status = :status
       OR (:status = 'unknown' AND status IS NULL))
ORDER BY connection_id, id LIMIT :limit
"""
# Included again (excluded from 1 to 0): what changed while it was excluded was not applied,
# and its change may be older than any cursor, so it waits for a read of its own (see
# UNCONFIRMED).
SET_EXCLUDED = """
UPDATE listings SET excluded = :excluded, updated_at = :now,
    needs_read = CASE WHEN excluded > :excluded THEN 1 ELSE needs_read END
WHERE id = :id
"""
_TRACKED_COLUMNS = (
    "id, listing_key, status, status_changed_at, last_checked_at, last_error IS NOT NULL"
)
# As one JSON list (`json_rows`), sorted by key once read.
TRACKED = json_rows(_TRACKED_COLUMNS, "FROM listings WHERE connection_id = ? AND excluded = 0")
# The listings of a connection that wait for a read of their own (needs_read, migration 0015):
# never checked since they were tracked (or moved to another key, or included again), or last
# checked without a usable answer. A read of changes never returns a record that has not
# changed, so an incremental or events connection reads these by key every cycle
# (docs/mls-reso.md "Incremental reading"). Through their own index, which holds them alone:
# the rest of the connection's listings are not read.
UNCONFIRMED = f"""
SELECT {_TRACKED_COLUMNS}
FROM listings WHERE connection_id = ? AND excluded = 0 AND needs_read = 1
"""
# The same, and those an event named, which a cycle reads again for the connection's overlap
# (read_again_until, migration 0017; docs/mls-reso.md "The change log"), and once more after
# it, which clears it (MARK_CHECKED). Each part through the index that holds its listings.
UNCONFIRMED_OR_READ_AGAIN = f"""
{UNCONFIRMED}
UNION
SELECT {_TRACKED_COLUMNS}
FROM listings WHERE connection_id = ? AND excluded = 0 AND read_again_until IS NOT NULL
"""
# The connections that have any (see UNCONFIRMED): asked once per run, so that a connection
# with none, the usual case, costs no read of its own.
WITH_UNCONFIRMED = """
SELECT DISTINCT connection_id FROM listings WHERE needs_read = 1 AND excluded = 0
"""
WITH_UNCONFIRMED_OR_READ_AGAIN = f"""
{WITH_UNCONFIRMED}
UNION
SELECT connection_id FROM listings WHERE read_again_until IS NOT NULL AND excluded = 0
"""
# How a sync's write finds again a listing's row that CURRENT read in its transaction
# (`CurrentListing.row`): on SQLite its rowid, one B-tree search, where the TEXT id takes two
# (its index, then the table); on PostgreSQL, the id. A rowid stays its row's while the row
# is not deleted and inserted again (nor the table rebuilt, nor vacuumed): between that read
# and MARK_CHECKED_UNCHANGED, `apply_plans` runs only UPDATEs by id, and nothing deletes a
# listing inside that transaction. A statement added there that deletes or inserts listings
# would have to find its rows by id.
ROW = Sql("rowid", "id")
# Its fifth column: whether the listing is settled (`CurrentListing.settled`), as
# MARK_CHECKED_SETTLED needs it; the next three, the record as its last check stored it.
# As one JSON list (`json_rows`).
CURRENT = json_rows(
    """id, status, connection_id, listing_key,
    needs_read = 0 AND fails_alone = 0 AND last_error IS NULL AND read_again_until IS NULL,
    mls_modified_at, mls_standard_status, mls_status, {row}""",
    "FROM listings WHERE id IN ({ids})",
    row=ROW,
    ids=json_values("?"),
)
OWNERS_OF_KEYS = both(
    "SELECT id, listing_key FROM listings WHERE connection_id = ? AND listing_key IN ({keys})",
    keys=json_values("?"),
)
TRACKED_BY_KEYS = both(
    """
SELECT id, listing_key FROM listings
WHERE connection_id = ? AND excluded = 0 AND listing_key IN ({keys})
""",
    keys=json_values("?"),
)
# Its parameters by position: it is run once for every listing a cycle checks, and a tuple
# costs less to make, and to bind, than a dict of names. The fifth and seventh: until when
# an event's read is read again (see UNCONFIRMED_OR_READ_AGAIN), or NULL. A later time set
# before is kept (daemons' clocks differ by seconds: the one behind would cut the window
# short); with NULL, a check at or after the time set before clears it (the check time, the
# sixth). In the same statement, not a second one: on PostgreSQL each UPDATE of a row leaves
# a version of it behind. What it clears is what CURRENT's fifth column says a settled
# listing has none of (see MARK_CHECKED_SETTLED): a column cleared here is one more there.
MARK_CHECKED = """
UPDATE listings SET last_checked_at = ?, mls_standard_status = ?, mls_status = ?,
    mls_modified_at = ?, last_error = NULL, needs_read = 0, fails_alone = 0,
    read_again_until = CASE WHEN read_again_until > coalesce(?, ?) THEN read_again_until
        ELSE ? END
WHERE id = ?
"""
# The same check of a settled listing (`CurrentListing.settled`, read in the transaction that
# writes it), with the event's read again NULL: MARK_CHECKED would leave every other column
# as it is, so it is not named. SQLite writes again each index on a column an UPDATE's SET
# names (or whose WHERE reads one), even to the same value: this is the statement run for
# nearly every listing a cycle checks, and the partial indexes on those columns (migrations
# 0015, 0017, 0018) made it measurably dearer (docs/benchmarks.md "The HTTP engine").
MARK_CHECKED_SETTLED = """
UPDATE listings SET last_checked_at = ?, mls_standard_status = ?, mls_status = ?,
    mls_modified_at = ?
WHERE id = ?
"""
# The same check of a settled listing whose record the check found as its last check stored
# it (nearly every listing of a cycle): only its time changes, so one statement writes the
# time of any number of them, where a statement per listing was a measurable share of SQLite's
# thread in a cycle (docs/benchmarks.md "The HTTP engine"). Its rows as CURRENT read them in
# the same transaction (`ROW`), cheaper to find on SQLite than by id (the same section).
MARK_CHECKED_UNCHANGED = both(
    "UPDATE listings SET last_checked_at = ? WHERE {row} IN ({rows})",
    row=ROW,
    rows=json_values("?"),
)
SET_STATUS = """
UPDATE listings SET status = :to_status, status_changed_at = :now, updated_at = :now
WHERE id = :id
"""
AUDIT = """
INSERT INTO status_changes (listing_id, connection_id, from_status, to_status,
    mls_standard_status, mls_status, event, run_id, changed_at)
SELECT :id, connection_id, :from_status, :to_status, :standard, :mls, :event, :run_id, :now
FROM listings WHERE id = :id
"""
# `alone`: 1, the error is a by-key query of the listing's key alone failing, which marks
# the key (see FAILING_ALONE); 0, a query of the marked key alone was answered, though its
# record could not be read, which clears the mark; NULL, the error says neither (a half not
# asked once the splitting's budget ran out, the server busy, an unreadable record of a read
# of changes), and the mark stays as it was.
SET_ERROR = """
UPDATE listings SET last_error = :message, needs_read = 1,
    fails_alone = coalesce(CAST(:alone AS BIGINT), fails_alone)
WHERE id = :id
"""
# The keys the server fails a query of alone, of every connection (migration 0018): each
# sync asks its connection's alone, first (docs/reliability.md "One key the server fails
# on"). Read once per run, through the index that holds them alone: none, the usual case,
# costs one empty read. A read of the record clears the mark (MARK_CHECKED), and so does a
# move to another key (INSERT).
FAILING_ALONE = "SELECT connection_id, listing_key FROM listings WHERE fails_alone = 1"
SET_ERROR_IF_STILL_TRACKED = """
UPDATE listings SET last_error = :message, needs_read = 1
WHERE id = :id AND connection_id = :connection_id AND listing_key = :key
"""
HISTORY = "SELECT * FROM status_changes WHERE listing_id = ? ORDER BY id"
COUNT_BY_STATUS = """
SELECT coalesce(status, 'unknown') AS status, count(*) AS n FROM listings GROUP BY 1 ORDER BY 1
"""
COUNT_BY_CONNECTION_AND_STATUS = both(
    """
SELECT connection_id, coalesce(status, 'unknown'), count(*) FROM listings
WHERE connection_id IN ({ids}) GROUP BY 1, 2
""",
    ids=json_values(":ids"),
)
_TIER_GROUPS = """
SELECT l.status, CASE WHEN l.status_changed_at >= :since THEN 1 ELSE 0 END,
    l.last_checked_at IS NULL OR l.last_error IS NOT NULL, count(*), min(l.last_checked_at)
FROM listings AS l JOIN mls_connections AS c ON c.id = l.connection_id
WHERE l.excluded = 0 AND c.mode = 'by_key' AND c.state = 'active' {}
GROUP BY 1, 2, 3
"""
TIER_GROUPS = _TIER_GROUPS.format("")
# One connection's: by the (connection_id, listing_key) index, not a scan of every listing.
TIER_GROUPS_OF_ONE = _TIER_GROUPS.format("AND l.connection_id = :connection_id")
CHANGES_BY_KIND = """
SELECT CASE WHEN event = 'changed' THEN to_status ELSE event END AS kind, count(*)
FROM status_changes WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC, 1
"""
TRANSITIONS = """
SELECT coalesce(from_status, 'none'), to_status, count(*) FROM status_changes
WHERE run_id = ? GROUP BY 1, 2
"""
CONNECTION_EXISTS = "SELECT 1 FROM mls_connections WHERE id = ?"


async def add_many(db: Database, specs: Sequence[ListingSpec], now: str) -> int:
    """Adds or re-points listings in one transaction; an unknown connection refuses them all.
    An existing listing keeps its status (the MLS, not the caller, decides it)."""
    rows = [{**s.model_dump(mode="json"), "now": now} for s in specs]
    async with db.transaction() as conn:
        for cid in sorted({s.connection_id for s in specs}):
            if await conn.fetch_one(CONNECTION_EXISTS, (cid,)) is None:
                raise NotFound(f"no MLS connection {cid!r}; add it with `mls-sync connections add`")
        return await conn.execute_many(INSERT, rows)


async def get(db: Database, listing_id: str) -> ListingRow | None:
    row = await db.fetch_one(GET, (listing_id,))
    return from_row(ListingRow, row) if row else None


async def list_some(
    db: Database, connection_id: str | None, status: str | None, limit: int
) -> list[ListingRow]:
    params = {"connection_id": connection_id, "status": status, "limit": limit}
    return [from_row(ListingRow, r) for r in await db.fetch_all(LIST, params)]


async def set_excluded(db: Database, listing_id: str, excluded: bool, now: str) -> bool:
    async with db.transaction() as conn:
        changed = await conn.execute(
            SET_EXCLUDED, {"id": listing_id, "excluded": int(excluded), "now": now}
        )
        return changed == 1


async def tracked(db: Database, connection_id: str) -> list[TrackedListing]:
    async with db.reading() as conn:
        return _tracked_by_key(await conn.fetch_all(TRACKED, (connection_id,)))


async def tracked_of_each(
    conn: Session, connection_ids: Sequence[str]
) -> list[list[TrackedListing]]:
    """`tracked` of each connection, in one call (`Session.fetch_each`): what a run's
    connections starting together ask for (`tracked_reader`)."""
    found = await conn.fetch_each([(TRACKED, (c,)) for c in connection_ids])
    return [_tracked_by_key(f) for f in found]


def _tracked_by_key(found: Sequence[Row]) -> list[TrackedListing]:
    rows = rows_read(found)
    rows.sort(key=itemgetter(1))  # by key
    return _tracked_of(rows)


# Connections whose tracked listings one trip reads at most: a trip holds the store's lock
# while it runs, and the other users of the database wait for it (as a group of writes is
# kept small, daemon/sync/sync_writer.py).
TRACKED_PER_TRIP = 32


def tracked_reader(db: Database) -> GroupWriter[str, list[TrackedListing]] | None:
    """`tracked` for many connections' syncs, the reads asked for together in one go, where
    that costs less (`Database.groups_reads`): a run's connections start in numbers, and each
    read alone was a trip to SQLite's thread (docs/benchmarks.md "A transaction's ends in its
    statements' trips"). None elsewhere: each sync reads its own."""
    return group_reader(db, tracked_of_each, TRACKED_PER_TRIP) if db.groups_reads else None


async def unconfirmed(
    db: Database, connection_id: str, read_again: bool = False
) -> list[TrackedListing]:
    """The connection's tracked listings that no read has confirmed (see UNCONFIRMED); with
    `read_again`, and those an event named that are read again (UNCONFIRMED_OR_READ_AGAIN)."""
    if read_again:
        found = await _tracked_by(db, UNCONFIRMED_OR_READ_AGAIN, (connection_id, connection_id))
    else:
        found = await _tracked_by(db, UNCONFIRMED, (connection_id,))
    return sorted(found, key=lambda t: t.listing_key)


async def failing_alone(db: Database) -> dict[str, frozenset[str]]:
    """The keys the server fails a query of alone (see FAILING_ALONE), by connection."""
    found: dict[str, set[str]] = {}
    for connection_id, key in await db.fetch_all(FAILING_ALONE):
        found.setdefault(str(connection_id), set()).add(str(key))
    return {c: frozenset(keys) for c, keys in found.items()}


async def connections_with_unconfirmed(db: Database, read_again: bool = False) -> set[str]:
    query = WITH_UNCONFIRMED_OR_READ_AGAIN if read_again else WITH_UNCONFIRMED
    return {str(r[0]) for r in await db.fetch_all(query)}


async def _tracked_by(db: Database, query: str, params: tuple[str, ...]) -> list[TrackedListing]:
    async with db.reading() as conn:
        return _tracked_of(await conn.fetch_all(query, params))  # one thread round trip


def _tracked_of(rows: Sequence[Row] | Sequence[list[Any]]) -> list[TrackedListing]:
    """`_TRACKED_COLUMNS`' rows as the sync takes them."""
    return [tracked_listing_of((r[0], r[1], STATUS_OF[r[2]], r[3], r[4], bool(r[5]))) for r in rows]


async def owners_of_keys(db: Database, connection_id: str, keys: Sequence[str]) -> dict[str, str]:
    """The listings that track any of `keys` on the connection, excluded ones too (key ->
    listing id): a key is tracked by one listing at most."""
    rows = await db.fetch_all(OWNERS_OF_KEYS, (connection_id, json.dumps(list(keys))))
    return {r[1]: r[0] for r in rows}


async def ids_for_keys(db: Database, connection_id: str, keys: Sequence[str]) -> dict[str, str]:
    """The tracked listings among `keys` (key -> listing id): what an incremental page needs,
    instead of the connection's whole tracked list."""
    if not keys:
        return {}
    async with db.reading() as conn:
        rows = await conn.fetch_all(TRACKED_BY_KEYS, (connection_id, json.dumps(list(keys))))
    return {r[1]: r[0] for r in rows}


async def current(conn: Session, ids: Sequence[str]) -> dict[str, CurrentListing]:
    """One query for the whole batch (json_each binds any number of ids as one parameter);
    a listing deleted since is left out."""
    return current_of(await conn.fetch_all(*current_read(ids)))


def current_read(ids: Sequence[str]) -> Read:
    """`current`'s read, to run with others in one trip (`Session.fetch_each`)."""
    return CURRENT, (json.dumps(list(ids)),)


def current_of(found: Sequence[Row]) -> dict[str, CurrentListing]:
    """What `current_read`'s rows say: each listing found, by id."""
    rows = rows_read(found)
    return {
        r[0]: current_listing_of((STATUS_OF[r[1]], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8]))
        for r in rows
    }


# A batch's plan as `apply_plans` writes it: with its run id, its time, and for the listings
# an event named, until when each is read again (see UNCONFIRMED_OR_READ_AGAIN), or None.
PlanWrite = tuple[BatchPlan, int, str, Mapping[str, str] | None]


def _last_errors(plans: Iterable[BatchPlan]) -> dict[str, Problem]:
    """Each listing's error, where the last of `plans` to read it left one. Two reads of one
    listing may share a transaction (a group commit): a failed read followed by an answered
    one leaves no error, though SET_ERROR runs after every MARK_CHECKED. In a plan, its
    problems come after its checks (an answer with a status that cannot be mapped is both).
    A warning (an ignored status) is no error of the listing's: its answer was read. The
    checks are looked at only once an error is pending: none, the usual case, costs
    nothing per listing. A listing found unchanged (`BatchPlan.unchanged`) is in no plan's
    checks: it is settled (no error), and its group reads it once, failed reads included
    (`sync_writes.plan_group`)."""
    errors: dict[str, Problem] = {}
    for plan in plans:
        if errors:
            for c in plan.checked:
                errors.pop(c.listing_id, None)
        for p in plan.problems:
            if not p.warning:
                earlier = errors.get(p.listing_id)
                if p.alone is None and earlier is not None:  # a mark it says nothing of
                    p = replace(p, alone=earlier.alone)
                errors[p.listing_id] = p
    return errors


class _CheckRows(NamedTuple):
    full: list[tuple[str | None, ...]]  # MARK_CHECKED's
    settled: list[tuple[str | None, ...]]  # MARK_CHECKED_SETTLED's
    unchanged: list[tuple[str, str]]  # MARK_CHECKED_UNCHANGED's: a time, a JSON list of rows


def _checks(plans: Sequence[PlanWrite], current: Mapping[str, CurrentListing]) -> _CheckRows:
    """The checks' rows: for MARK_CHECKED; for MARK_CHECKED_SETTLED those of settled
    listings no event named in the group; for MARK_CHECKED_UNCHANGED the rows each plan
    found unchanged (`BatchPlan.unchanged`), by the check's time. A plan has such rows only
    in a group that reads each of its listings once (`sync_writes.plan_group`): a listing's
    checks land in their order, whichever statement writes them."""
    named = {i for _, _, _, again in plans if again for i in again}
    full: list[tuple[str | None, ...]] = []
    settled_rows: list[tuple[str | None, ...]] = []
    unchanged: dict[str, list[int | str]] = {}
    for plan, _, now, again in plans:
        if plan.unchanged:
            unchanged.setdefault(now, []).extend(plan.unchanged)
        for c in plan.checked:
            listing_id = c.listing_id
            found = current.get(listing_id)
            modified = _as_stored(c.modified_at, found.modified_text if found else None)
            if checks_quietly(found, listing_id, named):
                settled_rows.append((now, c.standard_status, c.mls_status, modified, listing_id))
                continue
            until = again.get(listing_id) if again else None  # fifth and seventh
            full.append(
                (now, c.standard_status, c.mls_status, modified, until, now, until, listing_id)
            )
    return _CheckRows(
        full, settled_rows, [(now, json.dumps(rows)) for now, rows in unchanged.items()]
    )


def _as_stored(moment: datetime | None, stored: str | None) -> str | None:
    """`moment` as the store writes it: `stored` (the listing's last check's) when it is that
    text already. A record's timestamp rarely changes from one check to the next, and
    formatting it anew was a measurable share of a cycle's CPU (docs/benchmarks.md "The
    HTTP engine")."""
    if is_stored_form(stored, moment):
        return stored
    return None if moment is None else iso(moment)


async def apply_plans(
    conn: Writes,
    plans: Sequence[PlanWrite],
    written_at: str,
    current: Mapping[str, CurrentListing] | None = None,
) -> None:
    """Writes batches' plans (each with its run id and time); call inside the transaction
    that read `current`. One statement per kind of write for all of them, and none
    for an empty kind (the sync's writer holds them all for one trip: `WriteBatch`). A status
    change (the listing's, its audit row's, its event's) carries `written_at`, this
    transaction's time: a batch may wait a while for its turn to be written, and a change's
    time is when it was written (docs/events.md); when each listing was checked stays the
    batch's own time. `current`: the plans' listings as that transaction read them
    (`listings.current`); those it found settled (`CurrentListing.settled`) are checked with
    MARK_CHECKED_SETTLED, and the rows a plan found unchanged (`BatchPlan.unchanged`) with
    MARK_CHECKED_UNCHANGED."""
    checks = _checks(plans, current or {})
    changes = [
        {
            "id": c.listing_id,
            "from_status": c.from_status,
            "to_status": c.to_status,
            "standard": c.standard_status,
            "mls": c.mls_status,
            "event": c.event,
            "run_id": run_id,
            "now": written_at,
        }
        for plan, run_id, _, _ in plans
        for c in plan.changes
    ]
    errors = [
        {"id": listing_id, "message": p.message, "alone": None if p.alone is None else int(p.alone)}
        for listing_id, p in _last_errors(plan for plan, _, _, _ in plans).items()
    ]
    for statement, rows in (
        (MARK_CHECKED, checks.full),
        (MARK_CHECKED_SETTLED, checks.settled),
        (MARK_CHECKED_UNCHANGED, checks.unchanged),
        (SET_STATUS, changes),
        (AUDIT, changes),
        (SET_ERROR, errors),
    ):
        if rows:
            await conn.execute_many(statement, rows)
    # After the rows: each event shows its listing as the change left it.
    await events.listings_changed(
        conn,
        [
            events.ListingChanged(
                event_type_of(c),
                c.listing_id,
                c.from_status,
                c.to_status,
                c.event,
                run_id,
                written_at,
            )
            for plan, run_id, _, _ in plans
            for c in plan.changes
        ],
    )


async def mark_not_checked(
    conn: Session, connection_id: str, asked: Mapping[str, str], reason: str
) -> None:
    """A batch that failed: its listings keep their status and show why they were not
    checked. `asked`: listing id -> the key asked; a listing moved to another key (or
    connection) since is left alone, as an answer for its old key would be (`still_tracked`
    in daemon/sync/sync_writes.py)."""
    message = f"not checked: {reason}"
    await conn.execute_many(
        SET_ERROR_IF_STILL_TRACKED,
        [
            {"id": i, "connection_id": connection_id, "key": key, "message": message}
            for i, key in asked.items()
        ],
    )


async def history(db: Database, listing_id: str) -> list[StatusChangeRow]:
    return [from_row(StatusChangeRow, r) for r in await db.fetch_all(HISTORY, (listing_id,))]


async def count_by_status(db: Database) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in await db.fetch_all(COUNT_BY_STATUS)}


async def count_by_status_in(
    db: Database, connection_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Per connection of `connection_ids` (a page of them: the index on connection_id
    serves it), its listings by status; `unknown` before the MLS first answered."""
    found: dict[str, dict[str, int]] = {c: {} for c in connection_ids}
    params = {"ids": json.dumps(list(connection_ids))}
    for connection_id, status, count in await db.fetch_all(COUNT_BY_CONNECTION_AND_STATUS, params):
        found[str(connection_id)][str(status)] = int(count)
    return found


async def tier_groups(
    db: Database, recent_since: str, connection_id: str | None = None
) -> list[TierGroup]:
    """The tracked listings of active by_key connections (of one, if given), counted by what
    their check tier is made of (daemon/sync/check_tiers.py)."""
    params = {"since": recent_since, "connection_id": connection_id}
    query = TIER_GROUPS if connection_id is None else TIER_GROUPS_OF_ONE
    async with db.reading() as conn:
        rows = await conn.fetch_all(query, params)
    return [TierGroup(STATUS_OF[r[0]], bool(r[1]), bool(r[2]), int(r[3]), r[4]) for r in rows]


async def changes_by_kind(db: Database, run_id: int) -> dict[str, int]:
    """A run's changes: `sold`, `pending`... for ordinary ones; `restored`, `removed` and
    `first_seen` by their event."""
    return {r[0]: int(r[1]) for r in await db.fetch_all(CHANGES_BY_KIND, (run_id,))}


async def transitions(db: Database, run_id: int) -> dict[tuple[str, str], int]:
    return {(r[0], r[1]): int(r[2]) for r in await db.fetch_all(TRANSITIONS, (run_id,))}


_MATCHING = both(
    """
FROM listings
WHERE (CAST(:connection_id AS TEXT) IS NULL OR connection_id = :connection_id)
  AND (CAST(:status AS TEXT) IS NULL OR status = :status
       OR (:status = 'unknown' AND status IS NULL))
  AND (CAST(:excluded AS BIGINT) IS NULL OR excluded = :excluded)
  AND (CAST(:key_contains AS TEXT) IS NULL OR {position}(listing_key, :key_contains) > 0)
  AND (CAST(:user AS TEXT) IS NULL OR user_id = :user)
""",
    position=Sql("instr", "strpos"),
)
PAGE = both(
    """
SELECT * {matching} AND (CAST(:after AS TEXT) IS NULL OR id > :after) ORDER BY id LIMIT :limit
""",
    matching=_MATCHING,
)
COUNT = both("SELECT count(*) {matching}", matching=_MATCHING)


LISTINGS = Collection(ListingRow, PAGE, COUNT)


HISTORY_PAGE = """
SELECT * FROM status_changes
WHERE listing_id = :listing_id AND (CAST(:after AS BIGINT) IS NULL OR id > :after)
ORDER BY id LIMIT :limit
"""
HISTORY_COUNT = "SELECT count(*) FROM status_changes WHERE listing_id = :listing_id"


STATUS_CHANGES = Collection(StatusChangeRow, HISTORY_PAGE, HISTORY_COUNT, numbered=True)


DELETE_ONE = "DELETE FROM listings WHERE id = ?"
DELETE_POSTS = "DELETE FROM social_posts WHERE listing_id = ?"
COUNT_LIVE_POSTS = f"""
SELECT count(*) FROM social_posts WHERE listing_id = ? AND status IN {LIVE_POSTS_SQL}
"""


async def remove(db: Database, listing_id: str, force: bool, by: str, now: str) -> int:
    """Stops tracking a listing (its audit trail stays). Returns how many live posts went with
    it: a live post's row is what takes it down when the listing sells, so a listing with live
    posts is removed only when forced."""
    async with db.transaction() as conn:
        row = await conn.fetch_one(COUNT_LIVE_POSTS, (listing_id,))
        live = int(row[0]) if row else 0
        if live and not force:
            raise Conflict(
                f"listing {listing_id!r}: {live} of its post(s) are still live (published, or "
                "waiting for a person to remove them by hand), and nothing would take them down "
                "once their rows are gone; take them down first (unpublish), or remove it "
                "anyway with --force (?force=true over HTTP)"
            )
        await events.listings_untracked(conn, by, now, listing_id=listing_id)
        await conn.execute(DELETE_POSTS, (listing_id,))
        if await conn.execute(DELETE_ONE, (listing_id,)) != 1:
            raise NotFound("no listing has this id")
    return live
