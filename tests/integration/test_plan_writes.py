"""Batches' plans as the store writes them, several in one transaction (a group commit,
daemon/sync/sync_writer.py): a listing two of them read ends as the later read left it, error
or not; a listing's read-again time, which daemons with clocks apart may each set; and the
mark of a key the server fails a query of alone, which only a failing alone sets."""

from __future__ import annotations

import pytest

from daemon.composition import Runtime
from daemon.models import LocalStatus, MlsRecord
from daemon.store import listings, runs
from daemon.store.listings import PlanWrite
from daemon.sync.batch_plan import plan_batch
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
