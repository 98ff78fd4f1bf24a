"""Sync history: one row per run, its counts, and every error it met (with its scope)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from daemon.store import events
from daemon.store.database import Database
from daemon.store.paging import Collection
from daemon.store.records import RunErrorRow, RunRow, from_row
from daemon.store.session import Session, Writes

# The run_errors scopes (its CHECK, migrations/0001_initial.sql), and the outcomes of a run
# that got to its end (a run cut short is `interrupted`, or `failed` with a 'run' error).
ERROR_SCOPES = ("run", "connection", "batch", "listing", "post", "account")
CYCLE_OUTCOMES = ("ok", "partial", "failed")

START = """
INSERT INTO sync_runs (trigger, scope, holder, started_at) VALUES (?, ?, ?, ?) RETURNING id
"""
ADD_COUNTS = """
UPDATE sync_runs SET
    connections = connections + :connections,
    listings_checked = listings_checked + :checked,
    status_changes = status_changes + :changes,
    posts_unpublished = posts_unpublished + :posts,
    errors = errors + :errors,
    warnings = warnings + :warnings,
    mls_requests = mls_requests + :requests,
    posts_already_gone = posts_already_gone + :posts_gone,
    posts_failed = posts_failed + :posts_failed,
    posts_manual = posts_manual + :posts_manual
WHERE id = :run_id
"""
ADD_ERROR = """
INSERT INTO run_errors (run_id, scope, severity, connection_id, listing_id, message, at)
VALUES (:run_id, :scope, :severity, :connection_id, :listing_id, :message, :at)
"""
FINISH = """
UPDATE sync_runs SET finished_at = :at,
    outcome = CASE
        WHEN :failed = 1 THEN 'failed'
        WHEN errors > 0 THEN 'partial'
        ELSE 'ok' END
WHERE id = :run_id AND outcome = 'running'
"""
GET = "SELECT * FROM sync_runs WHERE id = ?"
RECENT = "SELECT * FROM sync_runs ORDER BY id DESC LIMIT ?"
ERRORS_OF = "SELECT * FROM run_errors WHERE run_id = ? ORDER BY id LIMIT ?"
ERRORS_BY_SCOPE_AND_CONNECTION = """
SELECT scope, connection_id, count(*) FROM run_errors
WHERE run_id = ? AND severity = 'error' GROUP BY 1, 2
"""
# The cycle (a run of every connection) this process is running, if any.
RUNNING_CYCLE = """
SELECT * FROM sync_runs WHERE outcome = 'running' AND scope = 'all' AND holder = ?
ORDER BY id LIMIT 1
"""  # the oldest: a newer one is reserved for the cycle asked for next (POST /v1/sync)
BEGIN_RESERVED = "UPDATE sync_runs SET started_at = :at WHERE id = :id"
IS_RUNNING = "SELECT 1 FROM sync_runs WHERE id = ? AND outcome = 'running'"
RUNNING = "SELECT id, holder, started_at FROM sync_runs WHERE outcome = 'running'"
END = """
UPDATE sync_runs SET outcome = :outcome, finished_at = :at
WHERE id = :run_id AND outcome = 'running'
"""
INTERRUPT = """
UPDATE sync_runs SET outcome = 'interrupted', finished_at = :at
WHERE id = :run_id AND outcome = 'running'
"""


@dataclass
class Counts:
    connections: int = 0
    checked: int = 0
    changes: int = 0
    posts: int = 0
    errors: int = 0
    warnings: int = 0
    requests: int = 0
    posts_gone: int = 0
    posts_failed: int = 0
    posts_manual: int = 0

    def add(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class Tally:
    """What a run has counted so far, as /metrics' counters follow it while it runs."""

    run_id: int
    checked: int
    requests: int
    errors: dict[tuple[str, str | None], int]  # (scope, connection id or None) -> errors


@dataclass(frozen=True)
class ErrorEntry:
    scope: str
    message: str
    connection_id: str | None = None
    listing_id: str | None = None
    severity: str = "error"


async def start(db: Database, trigger: str, scope: str, holder: str, at: str) -> int:
    async with db.transaction() as conn:
        row = await conn.fetch_one(START, (trigger, scope, holder, at))
    assert row is not None
    return int(row[0])


async def begin_reserved(db: Database, run_id: int, at: str) -> None:
    """A reserved run begins: it is timed from now, not from when it was asked for."""
    await db.write_one(BEGIN_RESERVED, {"at": at, "id": run_id})


async def record(
    conn: Session, run_id: int, counts: Counts, errors: Sequence[ErrorEntry], at: str
) -> None:
    """Adds to a run's counts and errors; call inside the transaction that did the work, so
    the history never disagrees with the data."""
    await record_many(conn, [(run_id, counts, errors, at)])


async def record_many(
    conn: Writes, parts: Sequence[tuple[int, Counts, Sequence[ErrorEntry], str]]
) -> None:
    """`record` for several pieces of work at once: one update per run, one insert of all
    the errors."""
    per_run: dict[int, Counts] = {}
    for run_id, counts, _, _ in parts:
        per_run.setdefault(run_id, Counts()).add(counts)
    updates = [{"run_id": r, **vars(c)} for r, c in per_run.items() if any(vars(c).values())]
    if updates:
        await conn.execute_many(ADD_COUNTS, updates)
    errors = [
        {"run_id": run_id, "at": at, **vars(e)} for run_id, _, entries, at in parts for e in entries
    ]
    if errors:
        await conn.execute_many(ADD_ERROR, errors)


async def record_now(
    db: Database, run_id: int, counts: Counts, errors: Sequence[ErrorEntry], at: str
) -> None:
    async with db.transaction() as conn:
        await record(conn, run_id, counts, errors, at)


async def finish(db: Database, run_id: int, at: str, failed: bool) -> RunRow:
    async with db.transaction() as conn:
        ended = await conn.execute(FINISH, {"run_id": run_id, "at": at, "failed": int(failed)})
        if ended:  # not if another process ended it meanwhile (and reported it)
            await events.runs_finished(conn, [run_id], at)
        row = await conn.fetch_one(GET, (run_id,))
    assert row is not None
    return from_row(RunRow, row)


async def end_in(
    conn: Session, run_id: int, outcome: str, at: str, error: ErrorEntry | None
) -> None:
    """Ends a run cut short (`interrupted`, `failed`) with the error that cut it, if any."""
    if error is not None:
        await record(conn, run_id, Counts(errors=1), [error], at)
    if await conn.execute(END, {"run_id": run_id, "outcome": outcome, "at": at}):
        await events.runs_finished(conn, [run_id], at)


async def is_running(conn: Session, run_id: int) -> bool:
    return await conn.fetch_one(IS_RUNNING, (run_id,)) is not None


async def get(db: Database, run_id: int) -> RunRow | None:
    row = await db.fetch_one(GET, (run_id,))
    return from_row(RunRow, row) if row else None


async def recent(db: Database, limit: int) -> list[RunRow]:
    return [from_row(RunRow, r) for r in await db.fetch_all(RECENT, (limit,))]


async def errors_of(db: Database, run_id: int, limit: int = 1000) -> list[RunErrorRow]:
    return [from_row(RunErrorRow, r) for r in await db.fetch_all(ERRORS_OF, (run_id, limit))]


async def running(db: Database) -> list[tuple[int, str, str]]:
    """(run id, holder, when it started) of every run not finished."""
    return [(int(r[0]), str(r[1]), str(r[2])) for r in await db.fetch_all(RUNNING)]


async def interrupt(db: Database, run_ids: Sequence[int], at: str) -> None:
    """Marks runs whose process died as interrupted. Their committed work stays; the next
    cycle redoes the rest, since every step is idempotent."""
    async with db.transaction() as conn:
        # One by one: only a run this call ended is reported (another process sweeping the
        # same dead runs may have ended it first).
        ended = [i for i in run_ids if await conn.execute(INTERRUPT, {"run_id": i, "at": at})]
        await events.runs_finished(conn, ended, at)


_MATCHING = """
FROM sync_runs WHERE (CAST(:outcome AS TEXT) IS NULL OR outcome = :outcome)
  AND (CAST(:trigger AS TEXT) IS NULL OR trigger = :trigger)
"""
# Newest first: a cursor is the oldest id of the slice before.
PAGE = f"""
SELECT * {_MATCHING} AND (CAST(:after AS BIGINT) IS NULL OR id < :after)
ORDER BY id DESC LIMIT :limit
"""
COUNT = f"SELECT count(*) {_MATCHING}"


RUNS = Collection(RunRow, PAGE, COUNT, numbered=True)


_ERRORS_MATCHING = """
FROM run_errors WHERE run_id = :run_id AND (CAST(:severity AS TEXT) IS NULL OR severity = :severity)
  AND (CAST(:connection_id AS TEXT) IS NULL OR connection_id = :connection_id)
"""
ERRORS_PAGE = f"""
SELECT * {_ERRORS_MATCHING} AND (CAST(:after AS BIGINT) IS NULL OR id > :after)
ORDER BY id LIMIT :limit
"""
ERRORS_COUNT = f"SELECT count(*) {_ERRORS_MATCHING}"


RUN_ERRORS = Collection(RunErrorRow, ERRORS_PAGE, ERRORS_COUNT, numbered=True)


async def tally(db: Database, run: RunRow) -> Tally:
    """`run`'s counts (as read) and its errors, by scope and connection."""
    async with db.reading() as conn:
        return await _tally_in(conn, run)


async def running_cycle(db: Database, holder: str) -> Tally | None:
    """The tally of the cycle `holder` is running, or None when it runs none."""
    async with db.reading() as conn:
        row = await conn.fetch_one(RUNNING_CYCLE, (holder,))
        return None if row is None else await _tally_in(conn, from_row(RunRow, row))


async def _tally_in(conn: Session, run: RunRow) -> Tally:
    errors = {
        (r[0], r[1]): int(r[2])
        for r in await conn.fetch_all(ERRORS_BY_SCOPE_AND_CONNECTION, (run.id,))
    }
    return Tally(run.id, run.listings_checked, run.mls_requests, errors)
