"""Nothing about one record fails more than that record (issue 12, item 4), through a whole
cycle: hypothesis spoils one field of one record in an otherwise good MLS answer (timestamps
at the ends of the calendar and its offsets, dates far in the future, wrong types, huge
strings, junk), the sandbox MLS serves the answer on loopback, and the real engine syncs it in
by_key and in incremental mode. Every other listing must reach its MLS status, and every error
or warning recorded must be about the spoiled listing.

The default run tries 40 answers per mode; MLS_SYNC_BAD_RECORDS=1000 tries more.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from daemon.sandbox.faults import Fault
from daemon.store import connections, listings
from daemon.sync.engine import RunReport
from daemon.timestamps import iso, utcnow
from tests.reliability.conftest import World

EXAMPLES = int(os.environ.get("MLS_SYNC_BAD_RECORDS", "40"))
GOOD = {"K1": ("Closed", "sold"), "K2": ("Pending", "pending"), "K3": ("Active", "active")}
FIELDS = ["StandardStatus", "MlsStatus", "ModificationTimestamp", "MlgCanView", "Extra"]

_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_moments = st.datetimes(timezones=_offsets).map(lambda d: d.isoformat())
_edges = st.sampled_from(
    [
        "9999-12-31T23:00:00-05:00",
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-24T10:00:00",  # no zone
        "2026-11-24T10:00:00+24:00",
    ]
)
_future = st.integers(1, 10_000).map(lambda d: iso(utcnow() + timedelta(days=d)))
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=4,
)
_huge = st.integers(1_000, 20_000).map(lambda n: "x" * n)
# The calendar's edges weigh as much as everything else together: they are the rare values
# that broke whole cycles.
_values = st.one_of(_edges, _edges, _edges, _edges, _moments, _future, _json, _huge)
_overflows = [("ModificationTimestamp", "9999-12-31T23:00:00-05:00")]
_overflows += [("ModificationTimestamp", "0001-01-01T00:30:00+01:00")]


@pytest.mark.parametrize("mode", ["by_key", "incremental"])
@settings(max_examples=EXAMPLES, deadline=None)
@given(spoiled=st.sampled_from(sorted(GOOD)), field=st.sampled_from(FIELDS), value=_values)
@example(spoiled="K2", field=_overflows[0][0], value=_overflows[0][1])
@example(spoiled="K3", field=_overflows[1][0], value=_overflows[1][1])
# A timestamp that puts its record out of order in the answer (first, yet the latest; last,
# yet the earliest): the answer is one page, read whole, so no order is judged.
@example(spoiled="K1", field="ModificationTimestamp", value="9999-12-31T23:59:59.999999Z")
@example(spoiled="K3", field="ModificationTimestamp", value="2026-11-24T09:00:00Z")
def test_one_bad_field_fails_only_its_listing(
    world: World, mode: str, spoiled: str, field: str, value: Any
) -> None:
    world.portal.call(_check, world, mode, spoiled, field, value)


async def _check(world: World, mode: str, spoiled: str, field: str, value: Any) -> None:
    report, prefix = await _sync(world, mode, _answer(spoiled, field, value))
    assert report.run.finished_at is not None
    for key, (_, local) in GOOD.items():
        row = await listings.get(world.rt.db, f"{prefix}{key}")
        assert row is not None
        if key != spoiled:
            assert row.status == local, (mode, key, field, value, report.errors)
    for entry in report.errors:
        assert entry.listing_id == f"{prefix}{spoiled}", (mode, field, value, entry)


def _answer(spoiled: str, field: str, value: Any) -> str:
    records: list[dict[str, Any]] = []
    for i, (key, (standard, _)) in enumerate(GOOD.items()):
        record: dict[str, Any] = {
            "ListingKey": key,
            "StandardStatus": standard,
            "MlsStatus": standard,
            "ModificationTimestamp": f"2026-11-24T10:00:0{i}Z",
        }
        if key == spoiled:
            record[field] = value
        records.append(record)
    return json.dumps({"value": records})


async def _sync(world: World, mode: str, answer: str) -> tuple[RunReport, str]:
    """A new connection of the three listings whose MLS answers its first request with `answer`;
    in incremental mode its full pass is already done, so the cycle reads changes."""
    cid, prefix = await world.add_connection("r", sorted(GOOD), mode=mode)
    if mode == "incremental":
        start = iso(datetime(2026, 11, 1, tzinfo=UTC))
        async with world.rt.db.transaction() as conn:
            await connections.save_cursor(conn, cid, start, start)
        await connections.mark_reconciled(world.rt.db, cid, iso(utcnow()))
    # The first request only: what an incremental read asks next goes to the (empty) feed.
    first_answer = Fault("status", status=200, body=answer, times=1)
    return await world.sync_answered_by(cid, first_answer), prefix
