"""Batches' plans as the store writes them, several in one transaction (a group commit,
daemon/sync/sync_writer.py): a listing two of them read ends as the later read left it, error
or not; a listing's read-again time, which daemons with clocks apart may each set; and the
mark of a key the server fails a query of alone, which only a failing alone sets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from daemon.composition import Runtime
from daemon.models import LocalStatus, MlsRecord
from daemon.store import leases, listings, runs
from daemon.store.listings import PlanWrite
from daemon.sync.batch_plan import plan_batch
from daemon.sync.sync_writer import write_group
from daemon.sync.sync_writes import BatchWrite, Failure
from daemon.timestamps import iso, utcnow
from tests.helpers import add_connection, closed_port_url, track

pytestmark = pytest.mark.both_databases

FAILED = "HTTP 500 from the MLS server"


# What a failed read of L-A says of its key's failing alone (`Problem.alone`).
ALONE = {"failed alone": True, "answered alone, unreadable": False, "failed": None}


async def _after_reads(
    rt: Runtime, reads: list[str], together: bool = True
) -> tuple[str | None, int, bool]:
    """Listing L-A's error, need of a read, and whether its key is marked as one the server
    fails a query of alone, after `reads` (one of ALONE's, or "answered"), each a batch's
    plan, written in order: in one transaction (a group commit) if `together`, else each in
    its own."""
    await add_connection(rt, closed_port_url())
    await track(rt, "mls-1", ["A"], status="active")
    now = iso(utcnow())
    run_id = await runs.start(rt.db, "bench", "all", "test:1", now)
    mapping = rt.settings.mls.status_mapping()
    plans: list[PlanWrite] = []
    for read in reads:
        if read == "answered":
            seen = MlsRecord("A", "Active", "Active")
            plan = plan_batch({"L-A": LocalStatus.ACTIVE}, [("L-A", seen)], [], mapping)
        else:
            alone = {"L-A": said} if (said := ALONE[read]) is not None else None
            plan = plan_batch({"L-A": LocalStatus.ACTIVE}, [], [("L-A", FAILED)], mapping, alone)
        plans.append((plan, run_id, now, None))
    for group in [plans] if together else [[p] for p in plans]:
        async with rt.db.transaction() as conn:
            await listings.apply_plans(conn, group, now)
    query = "SELECT last_error, needs_read, fails_alone FROM listings WHERE id = 'L-A'"
    row = await rt.db.fetch_one(query)
    assert row is not None
    return row[0], int(row[1]), bool(row[2])


async def test_a_failed_read_followed_by_an_answer_in_the_same_write_leaves_no_error(
    runtime: Runtime,
) -> None:
    """Before: the error stayed on the listing (and it was read again) though its last read
    was answered."""
    assert (await _after_reads(runtime, ["failed", "answered"]))[:2] == (None, 0)


async def test_an_answer_followed_by_a_failed_read_in_the_same_write_keeps_the_error(
    runtime: Runtime,
) -> None:
    assert (await _after_reads(runtime, ["answered", "failed"]))[:2] == (FAILED, 1)


async def _read_again_until(rt: Runtime, times: list[str]) -> str | None:
    """L-A's read-again time after events' reads that set `times`, one write each, in order
    (as daemons whose clocks differ write them)."""
    await add_connection(rt, closed_port_url())
    await track(rt, "mls-1", ["A"], status="active")
    now = iso(utcnow())
    run_id = await runs.start(rt.db, "bench", "all", "test:1", now)
    seen = MlsRecord("A", "Active", "Active")
    plan = plan_batch(
        {"L-A": LocalStatus.ACTIVE}, [("L-A", seen)], [], rt.settings.mls.status_mapping()
    )
    for until in times:
        async with rt.db.transaction() as conn:
            await listings.apply_plans(conn, [(plan, run_id, now, {"L-A": until})], now)
    row = await rt.db.fetch_one("SELECT read_again_until FROM listings WHERE id = 'L-A'")
    assert row is not None
    return None if row[0] is None else str(row[0])


async def test_an_earlier_read_again_time_does_not_shorten_a_later_one(runtime: Runtime) -> None:
    """A daemon whose clock is behind names the listing second: its time, a few seconds
    earlier, does not cut the other's window short."""
    later, earlier = "2099-01-01T00:20:05.000000Z", "2099-01-01T00:20:00.000000Z"
    assert await _read_again_until(runtime, [later, earlier]) == later


async def test_a_later_read_again_time_extends_an_earlier_one(runtime: Runtime) -> None:
    later, earlier = "2099-01-01T00:40:00.000000Z", "2099-01-01T00:20:00.000000Z"
    assert await _read_again_until(runtime, [earlier, later]) == later


@pytest.mark.parametrize("together", [False, True], ids=["one write each", "one write"])
@pytest.mark.parametrize(
    ("reads", "marked"),
    [
        (["failed alone"], True),
        # Not asked alone since (the splitting's budget spent, the server busy): no answer
        # for the key, which stays marked. The first version cleared the mark here, and in
        # one write the later error's said nothing replaced the earlier one's mark.
        (["failed alone", "failed"], True),
        (["failed alone", "answered"], False),
        # Asked alone and answered, with a record that cannot be read: it fails alone no
        # more, and goes back into batches.
        (["failed alone", "answered alone, unreadable"], False),
        (["failed"], False),
    ],
)
async def test_a_key_the_server_fails_alone_stays_marked_until_a_query_of_it_is_answered(
    runtime: Runtime, reads: list[str], marked: bool, together: bool
) -> None:
    assert (await _after_reads(runtime, reads, together))[2] is marked


# What a listing's row may hold that a check of it clears (each makes it not settled,
# `CurrentListing.settled`), as SQL that sets it: each alone, so that each part of the
# settled test is tested.
UNSETTLED = {
    "an error": "last_error = 'HTTP 500 from the MLS server'",
    "a need of a read": "needs_read = 1",
    "a mark of failing alone": "fails_alone = 1",
    "a read again due": "read_again_until = '2000-01-01T00:00:00.000000Z'",
}
# A read-again time already past, and one to come.
PAST, TO_COME = "2000-01-01T00:00:00.000000Z", "2099-01-01T00:20:00.000000Z"

# A write of L-A's read: "answered" (with the events' read-again times it sets) or "failed".
Read = tuple[str, dict[str, str] | None]


async def _through_the_writer(
    rt: Runtime, unsettled: str | None, reads: list[Read], modified_before: str | None = None
) -> tuple[bool, tuple[Any, ...]]:
    """Whether the write transaction found L-A settled, and L-A's row after `reads`, each a
    batch's write, all written in one group as a sync writes them (its lease held):
    `unsettled`, one of UNSETTLED's, set on the row first, and `modified_before` as the
    ModificationTimestamp a check before stored."""
    await add_connection(rt, closed_port_url())
    await track(rt, "mls-1", ["A"], status="active")
    # As a check left it (a listing just tracked needs a read), then what `unsettled` says.
    settings = ["needs_read = 0", *([UNSETTLED[unsettled]] if unsettled else [])]
    if modified_before is not None:
        settings.append(f"mls_modified_at = '{modified_before}'")
    async with rt.db.transaction() as conn:
        for setting in settings:
            await conn.execute(f"UPDATE listings SET {setting} WHERE id = 'L-A'")
        settled = (await listings.current(conn, ["L-A"]))["L-A"].settled
    seen = MlsRecord("A", "Closed", "Sold", datetime(2026, 1, 2, tzinfo=UTC))
    _, row = await _in_one_group(
        rt,
        lambda run_id, now: [
            BatchWrite(run_id, "mls-1", [("L-A", seen)], [], now, read_again=again)
            if read == "answered"
            else BatchWrite(run_id, "mls-1", [], [Failure("L-A", "A", FAILED)], now)
            for read, again in reads
        ],
    )
    return settled, row


async def _in_one_group(
    rt: Runtime, writes_of: Callable[[int, str], list[BatchWrite]]
) -> tuple[str, tuple[Any, ...]]:
    """The batches' writes `writes_of(run id, time)` makes, written in one group as a sync
    writes them (its lease held): their time, and L-A's row after."""
    now = iso(utcnow())
    until = iso(utcnow() + timedelta(minutes=5))
    await leases.acquire(rt.db, leases.LeaseRequest("mls-1", "test:1", now, until))
    run_id = await runs.start(rt.db, "bench", "all", "test:1", now)
    async with rt.db.transaction() as conn:
        await write_group(
            conn,
            writes_of(run_id, now),
            rt.settings.mls.status_mapping(),
            {"mls-1": "test:1"},
            utcnow,
        )
    row = await rt.db.fetch_one(
        "SELECT status, mls_standard_status, mls_status, mls_modified_at, last_checked_at, "
        "last_error, needs_read, fails_alone, read_again_until FROM listings WHERE id = 'L-A'"
    )
    assert row is not None
    return now, tuple(row)


@pytest.mark.parametrize("unsettled", [None, *UNSETTLED])
async def test_a_listing_read_is_left_as_read_whatever_its_row_held_before(
    runtime: Runtime, unsettled: str | None
) -> None:
    """A check of a settled listing names only what it changes; each of the others has what
    the check clears cleared."""
    settled, row = await _through_the_writer(runtime, unsettled, [("answered", None)])
    assert settled is (unsettled is None)
    status, standard, mls, modified, checked_at, error, needs_read, alone, again = row
    assert (status, standard, mls) == ("sold", "Closed", "Sold")
    assert modified == "2026-01-02T00:00:00.000000Z" and checked_at is not None
    assert (error, int(needs_read), int(alone), again) == (None, 0, 0, None)


@pytest.mark.parametrize("unsettled", [None, "an error"])
@pytest.mark.parametrize(
    "before",
    [
        None,
        "2026-01-02T00:00:00.000000Z",  # the record's timestamp, as the store writes it
        "2026-01-01T23:59:59.999999Z",  # a microsecond earlier
        "2026-01-02T00:00:00+00:00",  # the record's timestamp in another form
        "2026-01-02T01:00:00.000000+01:00",  # and in another zone
    ],
)
async def test_a_check_stores_the_records_timestamp_in_the_stores_form_whatever_was_there(
    runtime: Runtime, unsettled: str | None, before: str | None
) -> None:
    """Whatever text the last check stored, the row ends with the store's form of the moment
    read (fixed width, so that text order stays time order): the stored text is kept only
    when it is that form already, never when it says the same moment another way."""
    _, row = await _through_the_writer(runtime, unsettled, [("answered", None)], before)
    assert row[3] == "2026-01-02T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("reads", "error", "again"),
    [
        ([("answered", {"L-A": TO_COME})], None, TO_COME),
        # In one group: a later read that failed leaves its error, an earlier one does not.
        ([("failed", None), ("answered", None)], None, None),
        ([("answered", None), ("failed", None)], FAILED, None),
        # An event's read of a time past, then a read of the listing's own: the later read
        # clears the time, as it would in a write of its own.
        ([("answered", {"L-A": PAST}), ("answered", None)], None, None),
    ],
    ids=["an event's read", "failed, then answered", "answered, then failed", "event, then own"],
)
async def test_a_settled_listing_read_twice_in_one_group_ends_as_the_later_read_left_it(
    runtime: Runtime, reads: list[Read], error: str | None, again: str | None
) -> None:
    settled, row = await _through_the_writer(runtime, None, reads)
    assert settled
    assert (row[5], row[8]) == (error, again)


STORED = MlsRecord("A", "Active", "Active", datetime(2026, 1, 1, tzinfo=UTC))  # as last stored
SOLD = MlsRecord("A", "Closed", "Sold", datetime(2026, 1, 2, tzinfo=UTC))
LATER = STORED._replace(modification_timestamp=datetime(2026, 1, 3, tzinfo=UTC))  # same statuses


async def _settled_listing_read(
    rt: Runtime,
    records: list[MlsRecord],
    status: str = "active",
    read_again: dict[str, str] | None = None,
) -> tuple[Any, ...]:
    """L-A, settled, at `status`, its last check having stored STORED (a day old), read once
    per record of `records`, each a batch's write (with `read_again`), all in one group: its
    row after (the check's time: whether it is the group's)."""
    await add_connection(rt, closed_port_url())
    await track(rt, "mls-1", ["A"], status=status)
    async with rt.db.transaction() as conn:
        await conn.execute(
            "UPDATE listings SET needs_read = 0, mls_standard_status = 'Active', "
            "mls_status = 'Active', mls_modified_at = '2026-01-01T00:00:00.000000Z', "
            "last_checked_at = '2000-01-01T00:00:00.000000Z' WHERE id = 'L-A'"
        )
        assert (await listings.current(conn, ["L-A"]))["L-A"].settled
    now, row = await _in_one_group(
        rt,
        lambda run_id, now: [
            BatchWrite(run_id, "mls-1", [("L-A", r)], [], now, read_again=read_again)
            for r in records
        ],
    )
    return (*row[:4], row[4] == now, row[8])


async def test_a_check_that_finds_the_record_as_stored_moves_only_the_check_time(
    runtime: Runtime,
) -> None:
    row = await _settled_listing_read(runtime, [STORED])
    assert row == ("active", "Active", "Active", "2026-01-01T00:00:00.000000Z", True, None)


async def test_a_record_as_stored_still_moves_a_listing_whose_status_is_not_its_own(
    runtime: Runtime,
) -> None:
    """The MLS wins even when its record has not changed since the last check: a listing set
    to another status meanwhile goes back to the record's, with its audit row."""
    row = await _settled_listing_read(runtime, [STORED], status="pending")
    assert row == ("active", "Active", "Active", "2026-01-01T00:00:00.000000Z", True, None)
    changes = await runtime.db.fetch_all("SELECT from_status, to_status FROM status_changes")
    assert [tuple(c) for c in changes][-1] == ("pending", "active")


async def test_a_record_modified_since_with_the_same_statuses_stores_its_new_timestamp(
    runtime: Runtime,
) -> None:
    row = await _settled_listing_read(runtime, [LATER])
    assert row == ("active", "Active", "Active", "2026-01-03T00:00:00.000000Z", True, None)


async def test_a_failed_read_then_a_read_as_stored_in_one_group_leaves_no_error(
    runtime: Runtime,
) -> None:
    """The later read was answered, as its record was last stored: the earlier read's
    error does not stay."""
    await add_connection(runtime, closed_port_url())
    await track(runtime, "mls-1", ["A"], status="active")
    async with runtime.db.transaction() as conn:
        await conn.execute(
            "UPDATE listings SET needs_read = 0, mls_standard_status = 'Active', "
            "mls_status = 'Active', mls_modified_at = '2026-01-01T00:00:00.000000Z' "
            "WHERE id = 'L-A'"
        )
    _, row = await _in_one_group(
        runtime,
        lambda run_id, now: [
            BatchWrite(run_id, "mls-1", [], [Failure("L-A", "A", FAILED)], now),
            BatchWrite(run_id, "mls-1", [("L-A", STORED)], [], now),
        ],
    )
    assert (row[5], int(row[6])) == (None, 0)


async def test_tracked_listings_come_in_key_order_and_none_for_a_connection_without_any(
    runtime: Runtime,
) -> None:
    await add_connection(runtime, closed_port_url())
    keys = ["b-2", "A-1", "a-1", "B-10", "B-9"]
    await track(runtime, "mls-1", keys, status="active")
    found = await listings.tracked(runtime.db, "mls-1")
    assert [t.listing_key for t in found] == sorted(keys)
    assert all(t.id == f"L-{t.listing_key}" and t.status == "active" for t in found)
    assert await listings.tracked(runtime.db, "mls-none") == []


async def test_a_record_as_stored_that_an_event_named_keeps_the_events_read_again_time(
    runtime: Runtime,
) -> None:
    row = await _settled_listing_read(runtime, [STORED], read_again={"L-A": TO_COME})
    assert row[4:] == (True, TO_COME)


async def test_a_record_as_stored_under_a_key_the_listing_no_longer_tracks_is_no_check(
    runtime: Runtime,
) -> None:
    """An answer for the key the listing tracked before it moved says nothing of it."""
    row = await _settled_listing_read(runtime, [STORED._replace(listing_key="B")])
    assert row == ("active", "Active", "Active", "2026-01-01T00:00:00.000000Z", False, None)


async def test_in_a_group_of_listings_each_check_lands_on_its_own_row(runtime: Runtime) -> None:
    """Six settled listings, all stored as STORED: in one group, three read as stored, two
    read sold, one not read. Each row ends as its own read left it, and only the rows read
    get the check's time (the unchanged ones are found by the rows the group read)."""
    keys = ["A", "B", "C", "D", "E", "F"]
    await add_connection(runtime, closed_port_url())
    await track(runtime, "mls-1", keys, status="active")
    async with runtime.db.transaction() as conn:
        await conn.execute(
            "UPDATE listings SET needs_read = 0, mls_standard_status = 'Active', "
            "mls_status = 'Active', mls_modified_at = '2026-01-01T00:00:00.000000Z', "
            "last_checked_at = '2000-01-01T00:00:00.000000Z'"
        )
    reads = {"B": STORED, "C": SOLD, "D": STORED, "E": SOLD, "F": STORED}
    now, _ = await _in_one_group(
        runtime,
        lambda run_id, now: [
            BatchWrite(run_id, "mls-1", [(f"L-{k}", r._replace(listing_key=k))], [], now)
            for k, r in reads.items()
        ],
    )
    rows = await runtime.db.fetch_all(
        "SELECT listing_key, status, mls_status, last_checked_at FROM listings ORDER BY id"
    )
    sold, active = ("sold", "Sold", now), ("active", "Active", now)
    assert {r[0]: tuple(r)[1:] for r in rows} == {
        "A": ("active", "Active", "2000-01-01T00:00:00.000000Z"),
        "B": active,
        "C": sold,
        "D": active,
        "E": sold,
        "F": active,
    }


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        ([SOLD, STORED], ("active", "Active", "Active", "2026-01-01T00:00:00.000000Z", True, None)),
        ([STORED, SOLD], ("sold", "Closed", "Sold", "2026-01-02T00:00:00.000000Z", True, None)),
        (
            [LATER, STORED],
            ("active", "Active", "Active", "2026-01-01T00:00:00.000000Z", True, None),
        ),
    ],
    ids=["changed, then as stored", "as stored, then changed", "modified, then as stored"],
)
async def test_a_listing_read_as_stored_and_changed_in_one_group_ends_as_the_later_read_left_it(
    runtime: Runtime, reads: list[MlsRecord], expected: tuple[Any, ...]
) -> None:
    """The status too: the later read's record is what the listing's status follows, and
    its timestamp is the one stored."""
    assert await _settled_listing_read(runtime, reads) == expected
