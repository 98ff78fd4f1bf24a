"""How listings are asked for: key filter forms, URL limits, paging, and incremental mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.composition import Runtime
from daemon.sandbox.faults import Fault
from daemon.store import connections, listings
from daemon.timestamps import parse_iso
from tests.helpers import Mls, add_connection, add_incremental, status_of, track

pytestmark = pytest.mark.both_databases

KEYS = [f"Q{i:02d}" for i in range(10)]


@pytest.mark.parametrize(
    ("key_filter", "requests", "shape"),
    [
        ("in", 1, "ListingKey in ("),
        ("or", 1, "ListingKey eq 'Q00' or "),
        ("each", 10, "ListingKey eq"),
    ],
)
async def test_every_key_filter_form_gives_the_same_statuses(
    runtime: Runtime, mls: Mls, key_filter: str, requests: int, shape: str
) -> None:
    sandbox, url = mls
    for i, key in enumerate(KEYS):
        sandbox.put(key, ["Active", "Pending", "Closed"][i % 3])
    await add_connection(runtime, url, key_filter=key_filter)
    await track(runtime, "mls-1", KEYS)

    report = await runtime.engine.sync_all()

    assert report.run.mls_requests == requests
    assert all(shape in f for f in sandbox.filters)
    assert [await status_of(runtime, k) for k in KEYS[:3]] == ["active", "pending", "sold"]


async def test_long_keys_are_split_so_every_url_stays_under_the_limit(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    keys = [f"LONG-{'x' * 80}-{i:03d}" for i in range(50)]
    for key in keys:
        sandbox.put(key, "Closed")
    await add_connection(runtime, url, key_filter="or")
    await track(runtime, "mls-1", keys)

    report = await runtime.engine.sync_all()

    assert sandbox.longest_url <= runtime.settings.mls.max_url_length
    assert report.run.mls_requests > 1
    assert report.run.listings_checked == 50 and report.run.errors == 0


async def test_short_pages_are_followed_through_next_link(runtime: Runtime, mls: Mls) -> None:
    """A server that pages at 3 records still answers for all 10 keys of the batch; none of the
    later pages' keys is mistaken for removed."""
    sandbox, url = mls
    sandbox.max_page_size = 3
    for key in KEYS:
        sandbox.put(key, "Pending")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", KEYS)

    report = await runtime.engine.sync_all()

    assert report.run.mls_requests == 4
    assert {await status_of(runtime, k) for k in KEYS} == {"pending"}


async def test_a_next_link_to_another_server_is_refused(runtime: Runtime, mls: Mls) -> None:
    """Credentials are only ever sent to the connection's own server."""
    sandbox, url = mls
    sandbox.max_page_size = 3
    sandbox.next_link_base = "127.0.0.2:9"
    for key in KEYS:
        sandbox.put(key, "Closed")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", KEYS)

    report = await runtime.engine.sync_all()

    assert report.run.mls_requests == 1
    assert "refused @odata.nextLink" in report.errors[0].message
    assert {await status_of(runtime, k) for k in KEYS} == {None}


# -- incremental ------------------------------------------------------------------------------


async def test_incremental_starts_with_a_full_pass_then_asks_only_for_changes(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    for key in KEYS:
        sandbox.put(key, "Active")
    await add_incremental(runtime, url, KEYS)

    first = await runtime.engine.sync_all()
    sandbox.set_status("Q03", "Closed")
    second = await runtime.engine.sync_all()

    assert "ListingKey in" in sandbox.filters[0]
    assert sandbox.filters[1].startswith("ModificationTimestamp ge ")
    assert (first.run.listings_checked, second.run.listings_checked) == (10, 1)
    assert await status_of(runtime, "Q03") == "sold"
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.cursor is not None and row.last_full_reconcile_at is not None


async def test_incremental_applies_only_tracked_listings(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    for key in KEYS:
        sandbox.put(key, "Active")
    await add_incremental(runtime, url, KEYS[:2])
    await runtime.engine.sync_all()
    for key in KEYS:
        sandbox.set_status(key, "Closed")

    report = await runtime.engine.sync_all()

    assert report.run.status_changes == 2
    assert len(await listings.list_some(runtime.db, None, None, 100)) == 2


async def test_incremental_never_misses_changes_sharing_the_timestamp_of_a_page_boundary(
    runtime: Runtime, mls: Mls
) -> None:
    """Ten changes share one ModificationTimestamp across pages of three. The cycle dies after
    the first page; the cursor then sits exactly on that timestamp, and the next cycle must
    still find the seven that were not applied (a plain `gt cursor` would lose them)."""
    sandbox, url = mls
    sandbox.max_page_size = 3
    for key in KEYS:
        sandbox.put(key, "Active")
    await add_incremental(runtime, url, KEYS)
    await runtime.engine.sync_all()
    same = sandbox.stamp()
    for key in KEYS:
        sandbox.put(key, "Closed", modified=same)
    # After the first page and the two one-record reads that check the server's order.
    sandbox.faults.add(Fault("status", status=500, after=3, times=100))

    broken = await runtime.engine.sync_all()

    assert broken.run.errors == 1
    assert [await status_of(runtime, k) for k in KEYS].count("sold") == 3
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.cursor is not None and parse_iso(row.cursor) == same

    sandbox.faults.clear()
    await runtime.engine.sync_all()

    assert {await status_of(runtime, k) for k in KEYS} == {"sold"}
    for key in KEYS:
        assert len(await listings.history(runtime.db, f"L-{key}")) == 2  # first_seen, changed


async def test_incremental_runs_a_full_reconcile_when_it_is_due(runtime: Runtime, mls: Mls) -> None:
    sandbox, url = mls
    for key in KEYS:
        sandbox.put(key, "Active")
    await add_incremental(runtime, url, KEYS, full_reconcile_seconds=60)
    await runtime.engine.sync_all()
    # A change the incremental feed will never show (the server lost it): only a full pass finds it.
    sandbox.put("Q05", "Closed", modified=datetime(2001, 1, 1, tzinfo=UTC))
    await runtime.engine.sync_all()
    assert await status_of(runtime, "Q05") == "active"

    later = datetime.now(UTC) + timedelta(minutes=2)
    runtime.engine.clock = lambda: later
    await runtime.engine.sync_all()

    assert "ListingKey in" in sandbox.filters[-1]
    assert await status_of(runtime, "Q05") == "sold"
