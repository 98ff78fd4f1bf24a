"""Batches' plans written in one transaction (a group commit, daemon/sync/sync_writer.py):
a listing two of them read ends as the later read left it, error or not."""

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


async def _written_in_one_transaction(rt: Runtime, reads: list[str]) -> tuple[str | None, int]:
    """Listing L-A's error and need of a read after `reads` ("failed" or "answered"), each a
    batch's plan, written in order in one transaction."""
    await add_connection(rt, closed_port_url())
    await track(rt, "mls-1", ["A"], status="active")
    now = iso(utcnow())
    run_id = await runs.start(rt.db, "bench", "all", "test:1", now)
    mapping = rt.settings.mls.status_mapping()
    plans: list[PlanWrite] = []
    for read in reads:
        if read == "failed":
            plan = plan_batch({"L-A": LocalStatus.ACTIVE}, [], [("L-A", FAILED)], mapping)
        else:
            seen = MlsRecord("A", "Active", "Active")
            plan = plan_batch({"L-A": LocalStatus.ACTIVE}, [("L-A", seen)], [], mapping)
        plans.append((plan, run_id, now, None))
    async with rt.db.transaction() as conn:
        await listings.apply_plans(conn, plans, now)
    row = await rt.db.fetch_one("SELECT last_error, needs_read FROM listings WHERE id = 'L-A'")
    assert row is not None
    return row[0], int(row[1])


async def test_a_failed_read_followed_by_an_answer_in_the_same_write_leaves_no_error(
    runtime: Runtime,
) -> None:
    """Before: the error stayed on the listing (and it was read again) though its last read
    was answered."""
    assert await _written_in_one_transaction(runtime, ["failed", "answered"]) == (None, 0)


async def test_an_answer_followed_by_a_failed_read_in_the_same_write_keeps_the_error(
    runtime: Runtime,
) -> None:
    assert await _written_in_one_transaction(runtime, ["answered", "failed"]) == (FAILED, 1)
