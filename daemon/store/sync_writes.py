"""What a sync writes, many pieces per transaction (see `group_commit`).

Two kinds of write: an MLS answer for a batch of listings (planned against the statuses read
in the same transaction, so the plan, the new statuses, their audit rows, the run's counts and
the cursor commit together), and the end of one connection's part of a run (its counts, its
last error, its lease released). A group of them costs the same few statements as one.

Every write is fenced: it lands only if its connection's lease is still held by the writer's
holder and unexpired, checked in the transaction that writes it. A process frozen past its
lease (a GC pause, a suspended VM) may come back with an MLS answer older than the one its
successor wrote; that answer writes nothing, and the run records "lease lost".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import aiosqlite

from daemon.models import LocalStatus, Observation, StatusMapping
from daemon.store import connections, leases, listings, runs
from daemon.store.database import Database
from daemon.store.group_commit import GroupWriter, Refused
from daemon.store.runs import Counts, ErrorEntry
from daemon.sync.batch_plan import BatchPlan, plan_batch
from daemon.timestamps import iso


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """What the MLS said about some listings of one connection (listing ids, not keys)."""

    run_id: int
    connection_id: str
    observations: Sequence[tuple[str, Observation]]
    failures: Sequence[tuple[str, str]]
    at: str
    cursor: str | None = None  # incremental: moves with this page's data (invariant 5)
    reconciled_at: str | None = None  # the end of a complete full pass: when it started


@dataclass(frozen=True, slots=True)
class ConnectionDone:
    """A connection's part of a run is over: count it, note its error, free its lease."""

    run_id: int
    connection_id: str
    at: str
    requests: int
    error: str | None
    lease_holder: str
    new_state: str | None = None  # needs_reauth after two 401s: set only under the lease


@dataclass(frozen=True, slots=True)
class Applied:
    plan: BatchPlan
    counts: Counts


class LeaseLost(Refused):
    """This sync no longer holds its connection's lease: what it would write is dropped."""


def lease_lost(connection_id: str) -> str:
    return (
        f"lease lost: the sync of {connection_id} was paused longer than [sync] lease_seconds "
        "and another process may have taken it over; it wrote nothing more"
    )


SyncWrite = BatchWrite | ConnectionDone
SyncWriter = GroupWriter[SyncWrite, Applied | None]


# Listings per transaction. A group is planned on the event loop in one go, between the HTTP
# answers the loop also serves: under 200 polling clients, p99 of /status was 105 ms with
# groups of 1,000 listings (230 ms with 500 batches of 50) and 88 ms with 250.
LISTINGS_PER_GROUP = 250


def writer(
    db: Database,
    mapping: StatusMapping,
    holders: Mapping[str, str],
    clock: Callable[[], datetime],
) -> SyncWriter:
    """`holders`: the lease holder of each connection the run syncs (connection id -> holder),
    as the run holds them; a connection not in it holds no lease and writes nothing."""
    write = partial(write_group, mapping=mapping, holders=holders, clock=clock)
    return GroupWriter(db, write, LISTINGS_PER_GROUP, weight=_listings)


def _listings(write: SyncWrite) -> int:
    if isinstance(write, BatchWrite):
        return max(1, len(write.observations) + len(write.failures))
    return 1


async def write_group(
    conn: aiosqlite.Connection,
    writes: Sequence[SyncWrite],
    mapping: StatusMapping,
    holders: Mapping[str, str],
    clock: Callable[[], datetime],
) -> list[Applied | Refused | None]:
    """All of `writes` whose lease holds, inside the caller's transaction; one result per
    write (None for a ConnectionDone, LeaseLost for a BatchWrite without its lease)."""
    # Read after BEGIN IMMEDIATE: no lease can change hands until this transaction ends.
    valid = await leases.valid_in(conn, iso(clock()))

    def holds_lease(w: SyncWrite) -> bool:
        holder = w.lease_holder if isinstance(w, ConnectionDone) else holders.get(w.connection_id)
        return (w.connection_id, holder) in valid

    # Decided once: `holders` may change during the awaits below (a lease lost meanwhile), and
    # a page must never commit without its cursor, nor the other way round.
    held = [holds_lease(w) for w in writes]
    kept = [w for w, ok in zip(writes, held, strict=True) if ok]
    batches = [w for w in kept if isinstance(w, BatchWrite)]
    ids = [i for b in batches for i, _ in b.observations] + [
        i for b in batches for i, _ in b.failures
    ]
    current: dict[str, LocalStatus | None] = (
        await listings.current_statuses(conn, ids) if ids else {}
    )
    results: list[Applied | Refused | None] = []
    plans: list[tuple[BatchPlan, int, str]] = []
    recorded: list[tuple[int, Counts, Sequence[ErrorEntry], str]] = []
    for write, ok in zip(writes, held, strict=True):
        if not ok:
            results.append(_refuse(write, recorded))
            continue
        if isinstance(write, ConnectionDone):
            results.append(None)
            recorded.append(
                (write.run_id, Counts(connections=1, requests=write.requests), [], write.at)
            )
            continue
        plan = plan_batch(current, write.observations, write.failures, mapping)
        for change in plan.changes:  # a later write in the group plans from this one
            current[change.listing_id] = change.to_status
        counts = Counts(
            checked=len(plan.checked),
            changes=len(plan.changes),
            errors=plan.errors,
            warnings=plan.warnings,
        )
        entries = [
            ErrorEntry(
                "listing",
                p.message,
                write.connection_id,
                p.listing_id,
                "warning" if p.warning else "error",
            )
            for p in plan.problems
        ]
        plans.append((plan, write.run_id, write.at))
        recorded.append((write.run_id, counts, entries, write.at))
        results.append(Applied(plan, counts))
    await listings.apply_plans(conn, plans)
    await runs.record_many(conn, recorded)
    await connections.save_cursors(
        conn, [(b.connection_id, b.cursor, b.at) for b in batches if b.cursor is not None]
    )
    await connections.mark_reconciled_in(
        conn, [(b.connection_id, b.reconciled_at) for b in batches if b.reconciled_at]
    )
    done = [w for w in kept if isinstance(w, ConnectionDone)]
    await connections.mark_synced(conn, [(d.connection_id, d.at, d.error) for d in done])
    for d in done:
        if d.new_state is not None:
            await connections.set_state_in(conn, d.connection_id, d.new_state, d.error, d.at)
    await leases.release_in(conn, [(d.connection_id, d.lease_holder) for d in done])
    return results


def _refuse(
    write: SyncWrite, recorded: list[tuple[int, Counts, Sequence[ErrorEntry], str]]
) -> LeaseLost | None:
    """A write whose lease is gone: only the run's own counts and the error are recorded."""
    if isinstance(write, ConnectionDone):  # the connection's state is its new holder's now
        recorded.append(
            (write.run_id, Counts(connections=1, requests=write.requests), [], write.at)
        )
        return None
    message = lease_lost(write.connection_id)
    listings_dropped = len(write.observations) + len(write.failures)
    entry = ErrorEntry(
        "connection", f"{message} ({listings_dropped} listing(s) not written)", write.connection_id
    )
    recorded.append((write.run_id, Counts(errors=1), [entry], write.at))
    return LeaseLost(message)
