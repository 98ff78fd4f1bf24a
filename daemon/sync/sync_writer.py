"""The sync's writer: its writes, many per transaction (see `group_commit`), fenced by lease.

A group costs the same few statements as one write: the leases and the batches' statuses are
read, `sync_writes.plan_group` decides what the group writes, and one statement per kind of
write runs for all of it, inside the transaction that read; on SQLite, all of those
statements in one trip to its thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial

from daemon.models import StatusMapping
from daemon.store import connections, leases, listings, pushed_events, runs
from daemon.store.database import Database
from daemon.store.group_commit import GroupWriter, Refused
from daemon.store.session import Session, WriteBatch
from daemon.sync.sync_writes import (
    Applied,
    BatchWrite,
    SyncWrite,
    lease_held,
    listings_of,
    plan_group,
)
from daemon.timestamps import iso

SyncWriter = GroupWriter[SyncWrite, Applied | None]


# Listings per transaction. Each group costs its round trips to the database thread and a
# COMMIT whatever its size, so larger groups spend less of a cycle's CPU; but a group is
# planned on the event loop in one go, between the HTTP answers the loop also serves, and
# larger groups made /status and /readyz answer measurably slower under load (groups of 500
# and 1,000 were tried again after the garbage collector was tuned: docs/reliability.md
# "Load").
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
    conn: Session,
    writes: Sequence[SyncWrite],
    mapping: StatusMapping,
    holders: Mapping[str, str],
    clock: Callable[[], datetime],
) -> list[Applied | Refused | None]:
    """All of `writes` whose lease holds, inside the caller's transaction; one result per
    write (None for a ConnectionDone, LeaseLost for a write without its lease)."""
    # Read with BEGIN IMMEDIATE, in its trip: no lease can change hands until this transaction
    # ends. The time is taken just before, in this process's turn; should another process
    # hold SQLite's lock, it is older by that wait (the busy timeout at most), and a lease
    # taken over during it has another holder, which `lease_held` sees.
    written_at = iso(clock())
    written = {w.connection_id for w in writes}
    # The leases and the listings in one trip: those of every write, though a write whose
    # lease is lost (rare) writes none of its own.
    every = listings_of(writes, [True] * len(writes))
    reads = [leases.valid_of_read(written_at, written)]
    if every:
        reads.append(listings.current_read(every))
    found = await conn.fetch_each(reads)
    held = lease_held(writes, holders, leases.valid_of_rows(found[0]))
    ids = every if all(held) else listings_of(writes, held)
    current = listings.current_of(found[1]) if every else {}
    group = plan_group(writes, held, ids, current, mapping)
    # What the group writes, held and run together (`WriteBatch`): on SQLite one trip to its
    # thread for all of it, where each statement was one (docs/benchmarks.md "A group's
    # writes in one trip").
    batch = WriteBatch()
    await listings.apply_plans(batch, group.plans, written_at, current)
    await runs.record_many(batch, group.recorded)
    await connections.save_cursors(batch, group.cursors)
    await connections.mark_reconciled_in(batch, group.reconciled)
    await connections.mark_synced(batch, group.synced)
    await leases.release_in(batch, group.released)
    await pushed_events.remove_in(batch, group.pushed_done)
    await conn.execute_batch(batch.steps)
    # Rare (a connection found to need re-authentication): run as before, after the batch.
    for connection_id, state, error, at in group.new_states:
        await connections.set_state_in(conn, connection_id, state, error, at)
    return group.results
