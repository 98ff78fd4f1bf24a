"""What a sync writes, and what a group of its writes comes to. Pure: no I/O, no clock.

Two kinds of write: an MLS answer for a batch of listings (planned against the statuses read
in the same transaction, so the plan, the new statuses, their audit rows, the run's counts and
the cursor commit together), and the end of one connection's part of a run (its counts, its
last error, its lease released). `daemon/sync/sync_writer.py` commits many of them in one
transaction: it reads the leases and the statuses, `plan_group` decides, the store writes.

Every write is fenced: it lands only if its connection's lease is still held by the writer's
holder and unexpired, checked in the transaction that writes it. A process frozen past its
lease (a GC pause, a suspended VM) may come back with an MLS answer older than the one its
successor wrote; that answer writes nothing, and the run records "lease lost".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from daemon.enums import ConnectionState
from daemon.models import (
    UNCHANGED,
    BatchPlan,
    LocalStatus,
    MlsRecord,
    Observation,
    StatusMapping,
    decide,
)
from daemon.store.group_commit import Refused
from daemon.store.listings import PlanWrite
from daemon.store.records import CurrentListing, checks_quietly
from daemon.store.runs import Counts, ErrorEntry
from daemon.sync.batch_plan import plan_batch
from daemon.timestamps import is_stored_form


class Failure(NamedTuple):
    """A listing whose record could not be read, under the key asked."""

    listing_id: str
    listing_key: str
    why: str
    # Whether a query of the key alone failed: True, or False for a key known to fail
    # alone whose query of its own was answered; None when the failure says neither
    # (`Problem.alone`).
    alone: bool | None = None


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """What the MLS said about some listings of one connection (listing ids, not keys)."""

    run_id: int
    connection_id: str
    observations: Sequence[tuple[str, Observation]]
    failures: Sequence[Failure]
    at: str
    cursor: str | None = None  # incremental: moves with this page's data (invariant 5)
    reconciled_at: str | None = None  # the end of a complete full pass: when it started
    pushed_done: Sequence[int] = ()  # queued pushed events whose listings this write reads
    # Listings events named (listing ids), each read again by the connection's cycles until
    # the time beside it: a server's reads may lag its change log (docs/mls-reso.md "The
    # change log").
    read_again: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ConnectionDone:
    """A connection's part of a run is over: count it, note its error, free its lease."""

    run_id: int
    connection_id: str
    at: str
    requests: int
    error: str | None
    lease_holder: str
    new_state: ConnectionState | None = None  # needs_reauth after two 401s: under the lease
    # Whether it says the connection was synced (its last sync and last error): not for a run
    # that applied pushed events, which is no read of the change log.
    marks_synced: bool = True
    started: str | None = None  # when the sync began (its lease taken): None, at its end


@dataclass(frozen=True, slots=True)
class Applied:
    plan: BatchPlan
    counts: Counts


class LeaseLost(Refused):
    """This sync no longer holds its connection's lease: what it would write is dropped."""


def lease_lost(connection_id: str) -> str:
    return (
        f"lease lost: the sync of {connection_id} was paused past its lease (or its process "
        "lease) and another process may have taken it over; it wrote nothing more"
    )


SyncWrite = BatchWrite | ConnectionDone
# A run's part of the runs table, as `runs.record_many` takes it: (run id, counts, errors, when).
Recorded = tuple[int, Counts, Sequence[ErrorEntry], str]


@dataclass(slots=True)
class GroupPlan:
    """What a group of writes comes to, in the forms the store's functions take; `results`
    has one entry per write (None for a ConnectionDone, LeaseLost for a write without its
    lease)."""

    results: list[Applied | Refused | None] = field(default_factory=list)
    plans: list[PlanWrite] = field(default_factory=list)
    recorded: list[Recorded] = field(default_factory=list)
    cursors: list[tuple[str, str, str]] = field(default_factory=list)  # connection, cursor, when
    reconciled: list[tuple[str, str]] = field(default_factory=list)  # connection, pass started
    # run, connection, when it ended, when it began, error
    synced: list[tuple[int, str, str, str, str | None]] = field(default_factory=list)
    new_states: list[tuple[str, ConnectionState, str | None, str]] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)  # connection id, holder
    pushed_done: list[int] = field(default_factory=list)  # queued pushed events, applied


def lease_held(
    writes: Sequence[SyncWrite], holders: Mapping[str, str], valid: Collection[tuple[str, str]]
) -> list[bool]:
    """For each write, whether its connection's lease is still its writer's: `valid` is every
    unexpired (connection id, holder), read in the transaction that writes; `holders` the
    run's (connection id -> holder). Decided once per group: `holders` may change while the
    group is written (a lease lost meanwhile), and a page must never commit without its
    cursor, nor the other way round."""
    return [
        (
            w.connection_id,
            w.lease_holder if isinstance(w, ConnectionDone) else holders.get(w.connection_id),
        )
        in valid
        for w in writes
    ]


def listings_of(writes: Sequence[SyncWrite], held: Sequence[bool]) -> list[str]:
    """The listing ids of the batches that will be written: whose statuses to read."""
    batches = [w for w, ok in zip(writes, held, strict=True) if ok and isinstance(w, BatchWrite)]
    return [i for b in batches for i, _ in b.observations] + [
        f.listing_id for b in batches for f in b.failures
    ]


def plan_group(
    writes: Sequence[SyncWrite],
    held: Sequence[bool],
    ids: Sequence[str],
    current: Mapping[str, CurrentListing],
    mapping: StatusMapping,
) -> GroupPlan:
    """`held` from `lease_held`; `ids`: `listings_of` the writes; `current`: those listings
    as the transaction that writes them reads them."""
    group = GroupPlan()
    # Updated as each batch plans: a later write in the group plans from an earlier one.
    statuses = {listing_id: c.status for listing_id, c in current.items()}
    # A listing read twice in the group is planned in full each time: its checks must land
    # in their order, and a check found unchanged is written apart from the others.
    apart = len(set(ids)) == len(ids)
    # An event's read again is written with its listing's check (MARK_CHECKED).
    named = {i for w in writes if isinstance(w, BatchWrite) and w.read_again for i in w.read_again}
    for write, ok in zip(writes, held, strict=True):
        if not ok:
            group.results.append(_refuse(write, group.recorded))
        elif isinstance(write, ConnectionDone):
            _end_connection(write, group)
            group.results.append(None)
        else:
            if apart:
                unchanged, rest = split_unchanged(write, current, statuses, mapping, named)
            else:
                unchanged, rest = [], list(write.observations)
            group.results.append(
                _plan_batch(write, rest, unchanged, current, statuses, mapping, group)
            )
    return group


def split_unchanged(
    write: BatchWrite,
    current: Mapping[str, CurrentListing],
    statuses: Mapping[str, LocalStatus | None],
    mapping: StatusMapping,
    named: Collection[str],
) -> tuple[list[int | str], list[tuple[str, Observation]]]:
    """The write's observations split in two: the rows (`CurrentListing.row`) of the
    listings whose check finds them as their last check left them, and the rest, planned in
    full. Such a listing still tracks the record read, is settled (`CurrentListing.settled`)
    and no event named it, the record is the one its last check stored (its statuses and its
    ModificationTimestamp), and that record's status is the listing's already: its check
    writes its time alone (MARK_CHECKED_UNCHANGED). Nearly every listing of a cycle is one,
    and planning each in full was a measurable share of a cycle's CPU (docs/benchmarks.md
    "The HTTP engine")."""
    rows: list[int | str] = []
    rest: list[tuple[str, Observation]] = []
    connection_id = write.connection_id
    # Whether a status stays as it is under a record's statuses, decided once per distinct
    # three: a batch's records share a few.
    stays: dict[tuple[LocalStatus | None, str | None, str | None], bool] = {}
    for listing_id, seen in write.observations:
        now = current.get(listing_id)
        if (
            checks_quietly(now, listing_id, named)
            and isinstance(seen, MlsRecord)
            and _tracks(now, connection_id, seen.listing_key)
            and seen.standard_status == now.mls_standard_status
            and seen.mls_status == now.mls_status
            and is_stored_form(now.modified_text, seen.modification_timestamp)
        ):
            status = statuses[listing_id]
            three = (status, seen.standard_status, seen.mls_status)
            stay = stays.get(three)
            if stay is None:
                stay = stays[three] = decide(status, seen, mapping) is UNCHANGED
            if stay:
                rows.append(now.row)
                continue
        rest.append((listing_id, seen))
    return rows, rest


def _tracks(now: CurrentListing | None, connection_id: str, key: str) -> bool:
    """Whether the listing found `now` still tracks `key` on the connection."""
    return now is not None and now.listing_key == key and now.connection_id == connection_id


def still_tracked(
    write: BatchWrite,
    observations: Sequence[tuple[str, Observation]],
    current: Mapping[str, CurrentListing],
) -> tuple[list[tuple[str, Observation]], list[tuple[str, str]]]:
    """Of `observations` (the write's, or some of them), those of records their listings
    still track, and the write's failures to read them (listing id, why). A listing moved
    to another key (or connection) while the MLS answered for its old one is not what that
    answer is about: the answer would set its status from another listing's (a sale taking
    the wrong posts down) and count as its check, and a record of the old key that could
    not be read would be its error. It waits, as the move left it, for a read of its new
    key (docs/mls-reso.md, "Removed listings")."""
    connection_id = write.connection_id
    tracked = [
        (i, seen)
        for i, seen in observations
        if _tracks(current.get(i), connection_id, seen.listing_key)
    ]
    failures = [
        (f.listing_id, f.why)
        for f in write.failures
        if _tracks(current.get(f.listing_id), connection_id, f.listing_key)
    ]
    return tracked, failures


def _end_connection(done: ConnectionDone, group: GroupPlan) -> None:
    group.recorded.append(_connection_counted(done))
    if done.marks_synced:
        started = done.started or done.at
        group.synced.append((done.run_id, done.connection_id, done.at, started, done.error))
    if done.new_state is not None:
        group.new_states.append((done.connection_id, done.new_state, done.error, done.at))
    group.released.append((done.connection_id, done.lease_holder))


def _plan_batch(
    write: BatchWrite,
    observations: Sequence[tuple[str, Observation]],
    unchanged: list[int | str],
    current: Mapping[str, CurrentListing],
    statuses: dict[str, LocalStatus | None],
    mapping: StatusMapping,
    group: GroupPlan,
) -> Applied:
    """`unchanged`, `observations`: the write's observations as `split_unchanged` split
    them, the rows found unchanged and the rest, planned in full here."""
    tracked, failures = still_tracked(write, observations, current)
    alone = {f.listing_id: f.alone for f in write.failures if f.alone is not None}
    plan = plan_batch(statuses, tracked, failures, mapping, alone)
    plan.unchanged = unchanged
    for change in plan.changes:
        statuses[change.listing_id] = change.to_status
    counts = Counts(
        checked=len(plan.checked) + len(unchanged),
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
    group.plans.append((plan, write.run_id, write.at, write.read_again))
    group.recorded.append((write.run_id, counts, entries, write.at))
    if write.cursor is not None:
        group.cursors.append((write.connection_id, write.cursor, write.at))
    if write.reconciled_at:
        group.reconciled.append((write.connection_id, write.reconciled_at))
    group.pushed_done += write.pushed_done
    return Applied(plan, counts)


def _refuse(write: SyncWrite, recorded: list[Recorded]) -> LeaseLost | None:
    """A write whose lease is gone: only the run's own counts and the error are recorded."""
    message = lease_lost(write.connection_id)
    if isinstance(write, ConnectionDone):  # the connection's state is its new holder's now
        recorded.append(_connection_counted(write))
        return LeaseLost(message)  # recorded with the batch it refused, if any
    listings_dropped = len(write.observations) + len(write.failures)
    entry = ErrorEntry(
        "connection", f"{message} ({listings_dropped} listing(s) not written)", write.connection_id
    )
    recorded.append((write.run_id, Counts(errors=1), [entry], write.at))
    return LeaseLost(message)


def _connection_counted(done: ConnectionDone) -> Recorded:
    """A connection's part of the run counts in the run, its lease held or not."""
    return (done.run_id, Counts(connections=1, requests=done.requests), [], done.at)
