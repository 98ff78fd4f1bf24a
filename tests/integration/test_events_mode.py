"""Events mode: a connection that reads RESO's change log (EntityEvent) and then only the
listings its events name, against the sandbox MLS over real HTTP (docs/mls-reso.md "The
change log")."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.composition import Runtime
from daemon.sandbox.faults import Fault
from daemon.specs import ConnectionSpec, ListingSpec
from daemon.store import connections, leases, listings, runs
from daemon.store.records import ConnectionRow
from daemon.timestamps import iso
from tests.helpers import Mls, add_connection, status_of, track

pytestmark = pytest.mark.both_databases

KEYS = [f"E{i:02d}" for i in range(10)]


async def _events_connection(runtime: Runtime, mls: Mls, **fields: Any) -> None:
    sandbox, url = mls
    for key in KEYS:
        sandbox.put(key, "Active")
    sandbox.put("UNTRACKED", "Active")
    await add_connection(runtime, url, mode="events", **fields)
    await track(runtime, "mls-1", KEYS)


async def _sequence(runtime: Runtime) -> int:
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.cursor is not None
    return int(row.cursor)


async def test_a_sale_is_found_from_the_change_log_reading_only_the_listing_it_names(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await _events_connection(runtime, mls)
    first = await runtime.engine.sync_all()  # the full pass, and where the log stands
    assert first.run.listings_checked == 10
    assert await _sequence(runtime) == sandbox.next_sequence - 1
    sandbox.set_status("E03", "Closed")
    sandbox.set_status("UNTRACKED", "Closed")
    asked_before = len(sandbox.filters)

    second = await runtime.engine.sync_all()

    asked = sandbox.filters[asked_before:]
    assert asked[0].startswith("EntityEventSequence gt ")
    assert asked[1:] == ["ListingKey in ('E03')"] or asked[1:] == ["ListingKey eq 'E03'"]
    assert (second.run.listings_checked, second.run.status_changes, second.run.errors) == (1, 1, 0)
    assert await status_of(runtime, "E03") == "sold"
    assert [c.event for c in await listings.history(runtime.db, "L-E03")][-1] == "changed"
    assert await _sequence(runtime) == sandbox.next_sequence - 1


async def test_a_read_that_finds_nothing_costs_one_request(runtime: Runtime, mls: Mls) -> None:
    await _events_connection(runtime, mls)
    await runtime.engine.sync_all()
    quiet = await runtime.engine.sync_all()
    assert (quiet.run.mls_requests, quiet.run.errors, quiet.run.outcome) == (1, 0, "ok")


async def test_a_compacted_log_loses_no_change_and_a_listing_gone_from_the_feed_is_removed(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await _events_connection(runtime, mls)
    await runtime.engine.sync_all()
    for status in ("Pending", "Closed"):
        sandbox.set_status("E01", status)
    sandbox.set_status("E02", "Pending")
    sandbox.delete("E04")  # no longer visible to this consumer: its read returns nothing
    assert sandbox.compact() > 0  # E01's first event is gone: a gap in the sequence

    await runtime.engine.sync_all()

    assert await status_of(runtime, "E01") == "sold"
    assert await status_of(runtime, "E02") == "pending"
    assert await status_of(runtime, "E04") == "off_market"
    assert [c.event for c in await listings.history(runtime.db, "L-E04")][-1] == "removed"


async def test_a_failed_read_of_the_named_listings_keeps_the_sequence_and_the_next_sync_applies_it(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await _events_connection(runtime, mls)
    await runtime.engine.sync_all()
    before = await _sequence(runtime)
    sandbox.set_status("E05", "Closed")
    # The log answers; every try of the listing's read fails.
    sandbox.faults.add(Fault("status", status=500, after=1, times=100))

    broken = await runtime.engine.sync_all()

    assert broken.run.errors == 1 and broken.run.outcome != "ok"
    assert await status_of(runtime, "E05") == "active"
    assert await _sequence(runtime) == before  # not past the change it could not read
    sandbox.faults.clear()
    await runtime.engine.sync_all()
    assert await status_of(runtime, "E05") == "sold"


async def test_an_event_without_a_readable_key_has_every_tracked_listing_read(
    runtime: Runtime, mls: Mls
) -> None:
    """It could stand for any listing: reading them all misses nothing, so it is a warning."""
    sandbox, _ = mls
    await _events_connection(runtime, mls)
    await runtime.engine.sync_all()
    sandbox.records["E07"]["StandardStatus"] = "Closed"  # changed without an event of its own
    sandbox.entity_events.append(
        {"EntityEventSequence": sandbox.next_sequence, "ResourceName": "Property"}
    )
    sandbox.next_sequence += 1
    sandbox.version += 1

    report = await runtime.engine.sync_all()

    assert (report.run.listings_checked, report.run.errors, report.run.warnings) == (10, 0, 1)
    assert await status_of(runtime, "E07") == "sold"
    assert await _sequence(runtime) == sandbox.next_sequence - 1


async def test_an_event_naming_property_in_another_case_is_applied(
    runtime: Runtime, mls: Mls
) -> None:
    """A producer that writes `property`: its events are the listings', not another
    resource's to skip while the run says ok."""
    sandbox, _ = mls
    await _events_connection(runtime, mls)
    await runtime.engine.sync_all()
    sandbox.records["E07"]["StandardStatus"] = "Closed"  # changed without an event of its own
    sandbox.entity_events.append(
        {
            "EntityEventSequence": sandbox.next_sequence,
            "ResourceName": "PROPERTY",
            "ResourceRecordKey": "E07",
        }
    )
    sandbox.next_sequence += 1
    sandbox.version += 1

    report = await runtime.engine.sync_all()

    assert (report.run.listings_checked, report.run.errors) == (1, 0)
    assert await status_of(runtime, "E07") == "sold"


async def test_the_full_pass_runs_when_it_is_due_and_the_log_is_read_on_from_before_it(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await _events_connection(runtime, mls, full_reconcile_seconds=60)
    await runtime.engine.sync_all()
    # A change the log never showed (the producer lost it): only a full pass finds it.
    sandbox.records["E08"]["StandardStatus"] = "Closed"
    sandbox.version += 1
    await runtime.engine.sync_all()
    assert await status_of(runtime, "E08") == "active"

    later = datetime.now(UTC) + timedelta(minutes=2)
    runtime.engine.clock = lambda: later
    full = await runtime.engine.sync_all()

    assert full.run.listings_checked == 10
    assert await status_of(runtime, "E08") == "sold"
    assert await _sequence(runtime) == sandbox.next_sequence - 1


async def test_a_listing_whose_record_comes_back_unreadable_is_read_at_each_sync_until_it_reads(
    runtime: Runtime, mls: Mls
) -> None:
    """The events after it are applied all the same, and the sequence moves on: the listing
    waits for a read of its own (`needs_read`, in the same commit), which each sync makes
    (a recorded error each time) until the record reads."""
    sandbox, _ = mls
    # No overlap: E02, which its event named, is not read again (that has a test of its own).
    await _events_connection(runtime, mls, overlap_seconds=0)
    await runtime.engine.sync_all()
    sandbox.put("E01", 404)  # a StandardStatus a broken feed sends: not a string
    sandbox.set_status("E02", "Closed")

    broken = await runtime.engine.sync_all()

    assert broken.run.errors == 1 and broken.run.outcome != "ok"
    assert await status_of(runtime, "E02") == "sold"
    assert await _sequence(runtime) == sandbox.next_sequence - 1
    again = await runtime.engine.sync_all()
    assert (again.run.errors, again.run.listings_checked) == (1, 0)
    sandbox.change_unlogged("E01", "Closed")  # mended, without an event of its own
    fixed = await runtime.engine.sync_all()
    assert (fixed.run.errors, await status_of(runtime, "E01")) == (0, "sold")


async def test_a_sale_a_servers_read_cache_hid_when_its_event_was_read_is_found_at_the_next_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """A server's reads may lag its change log (a cache, a replica): E04's event is read, and
    E04's record still reads active. A listing an event named is read again by the
    connection's cycles for its overlap, as a read of changes reads the overlap again
    (docs/mls-reso.md "The change log"); once the overlap has passed, it is not."""
    sandbox, _ = mls
    await _events_connection(runtime, mls, overlap_seconds=600)
    await runtime.engine.sync_all()
    sandbox.put("E04", "Active")  # E04's event, read while the cache still had the old record
    stale = await runtime.engine.sync_all()
    assert (stale.run.listings_checked, stale.run.outcome) == (1, "ok")
    assert await status_of(runtime, "E04") == "active"
    sandbox.change_unlogged("E04", "Closed")  # the cache catches up: no event of its own

    caught_up = await runtime.engine.sync_all()

    assert (caught_up.run.status_changes, caught_up.run.errors) == (1, 0)
    assert await status_of(runtime, "E04") == "sold"
    # Past the overlap (but before the full pass): read once more, then no more.
    later = datetime.now(UTC) + timedelta(seconds=601)
    runtime.engine.clock = lambda: later
    last = await runtime.engine.sync_all()
    assert last.run.listings_checked == 1
    quiet = await runtime.engine.sync_all()
    assert (quiet.run.mls_requests, quiet.run.listings_checked) == (1, 0)


async def test_a_sale_behind_a_lagging_read_next_to_an_unreadable_event_is_read_again(
    runtime: Runtime, mls: Mls
) -> None:
    """An unreadable event has every tracked listing read; the listing the page's readable
    event named is still read again by the next cycle, and only it (all ten read again at
    each cycle would be a full pass each time)."""
    sandbox, _ = mls
    await _events_connection(runtime, mls, overlap_seconds=600)
    await runtime.engine.sync_all()
    sandbox.put("E06", "Active")  # its event; the server's reads still have the old record
    sandbox.entity_events.append(
        {"EntityEventSequence": sandbox.next_sequence, "ResourceName": "Property"}
    )
    sandbox.next_sequence += 1
    sandbox.version += 1
    everything = await runtime.engine.sync_all()
    assert everything.run.listings_checked == 10
    sandbox.change_unlogged("E06", "Closed")
    asked_before = len(sandbox.filters)

    caught_up = await runtime.engine.sync_all()

    assert await status_of(runtime, "E06") == "sold"
    assert caught_up.run.listings_checked == 1
    assert sandbox.filters[asked_before + 1 :] in (
        ["ListingKey in ('E06')"],
        ["ListingKey eq 'E06'"],
    )


def _mid_slot(runtime: Runtime) -> int:
    """Places the clock's slots (daemon/sync/cycle_slots.py) so that now is half an interval
    from the next one; gives the interval."""
    interval = runtime.settings.cycle_seconds()
    runtime.engine.slot_offset = (int(time.time()) + interval // 2) % interval
    return interval


async def test_a_polls_sync_leaves_the_listings_to_read_again_to_the_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """A poll, every minute, reads what its events name (and what no read has confirmed),
    not the listings earlier events named: on a busy log that would be the whole overlap's
    listings every minute. The cycle reads them again."""
    sandbox, _ = mls
    _mid_slot(runtime)  # the poll comes in the slot of the syncs before it
    await _events_connection(runtime, mls, overlap_seconds=600)
    await runtime.engine.sync_all()
    sandbox.put("E02", "Active")  # read while the server's reads still have the old record
    await runtime.engine.sync_all()
    sandbox.change_unlogged("E02", "Closed")
    sandbox.set_status("E03", "Pending")
    asked_before = len(sandbox.filters)

    polled = await runtime.engine.poll_change_log(await _row(runtime))

    assert polled.outcome == "synced"
    assert sandbox.filters[asked_before + 2 :] in (
        ["ListingKey in ('E03')"],
        ["ListingKey eq 'E03'"],
    )
    assert await status_of(runtime, "E02") == "active"
    await runtime.engine.sync_all()
    assert await status_of(runtime, "E02") == "sold"


async def test_a_polls_sync_that_is_its_connections_first_in_the_slot_reads_again(
    runtime: Runtime, mls: Mls
) -> None:
    """A poll's sync is the connection's sync in its slot: the clock's cycle of that slot
    then leaves the connection alone. So the first poll's sync of a slot reads again what
    events named within the overlap, which the cycle would have."""
    sandbox, _ = mls
    interval = _mid_slot(runtime)
    await _events_connection(runtime, mls, overlap_seconds=2 * interval)
    await runtime.engine.sync_all()
    sandbox.put("E02", "Active")  # read while the server's reads still have the old record
    await runtime.engine.sync_all()
    sandbox.change_unlogged("E02", "Closed")
    sandbox.set_status("E03", "Pending")
    next_slot = datetime.now(UTC) + timedelta(seconds=interval)
    runtime.engine.clock = lambda: next_slot

    polled = await runtime.engine.poll_change_log(await _row(runtime))

    assert polled.outcome == "synced"
    assert await status_of(runtime, "E02") == "sold"
    cycle = await runtime.engine.sync_all("schedule")
    assert cycle.run.listings_checked == 0  # the poll's sync was the connection's in the slot


async def test_a_listing_moved_to_another_key_is_not_read_again_for_its_old_keys_event(
    runtime: Runtime, mls: Mls
) -> None:
    """What the event was about is the old key's record: once moved, the listing waits for a
    read of its new key, and nothing more."""
    sandbox, _ = mls
    await _events_connection(runtime, mls, overlap_seconds=600)
    sandbox.put("NEWKEY", "Active")
    await runtime.engine.sync_all()
    sandbox.put("E04", "Active")
    await runtime.engine.sync_all()  # E04's event: L-E04 is to be read again
    spec = ListingSpec(id="L-E04", connection_id="mls-1", listing_key="NEWKEY")
    await listings.add_many(runtime.db, [spec], iso(datetime.now(UTC)))
    moved = await runtime.engine.sync_all()
    assert moved.run.listings_checked == 1  # its new key, read once

    after = await runtime.engine.sync_all()

    assert (after.run.mls_requests, after.run.listings_checked) == (1, 0)


async def test_a_key_the_server_always_fails_on_costs_each_poll_the_same_as_the_log_grows(
    runtime: Runtime, mls: Mls
) -> None:
    """Every query naming F03 fails; the log grows by five other listings' changes a round.
    Each sync reads the new events and F03 alone, not every listing named since F03's event
    again (which grew by a batch a round)."""
    sandbox, url = mls
    keys = [f"F{i:02d}" for i in range(30)]
    for key in keys:
        sandbox.put(key, "Active")
    # No overlap: the listings each round's events named are not read again in the rounds
    # after (what that costs is bounded by the overlap, not by the log).
    await add_connection(runtime, url, mode="events", batch_size=5, overlap_seconds=0)
    await track(runtime, "mls-1", keys)
    await runtime.engine.sync_all()
    sandbox.faults.add(Fault("status", status=400, times=10_000, matching="'F03'"))
    sandbox.set_status("F03", "Closed")
    costs = []
    for changed in (keys[5:10], keys[10:15], keys[15:20], keys[20:25]):
        for key in changed:
            sandbox.set_status(key, "Pending")
        report = await runtime.engine.sync_all()
        assert report.run.errors == 1
        assert {await status_of(runtime, k) for k in changed} == {"pending"}
        costs.append(report.run.mls_requests)

    assert costs[-1] <= costs[1], costs


async def test_a_connection_switched_from_incremental_to_events_starts_with_a_full_pass(
    runtime: Runtime, mls: Mls
) -> None:
    """Each mode keeps its own kind of cursor (a timestamp, a sequence): a mode change
    forgets it, and the connection starts over as a new one in its mode would."""
    sandbox, url = mls
    for key in KEYS:
        sandbox.put(key, "Active")
    await add_connection(runtime, url, mode="incremental")
    await track(runtime, "mls-1", KEYS)
    await runtime.engine.sync_all()
    await add_connection(runtime, url, mode="events")
    sandbox.set_status("E06", "Closed")

    switched = await runtime.engine.sync_all()

    assert (switched.run.errors, switched.run.listings_checked) == (0, 10)
    assert await status_of(runtime, "E06") == "sold"
    assert await _sequence(runtime) == sandbox.next_sequence - 1
    await add_connection(runtime, url, mode="incremental")
    back = await runtime.engine.sync_all()
    assert (back.run.errors, back.run.listings_checked) == (0, 10)


async def test_refused_credentials_on_the_first_read_of_the_log_mark_the_connection(
    runtime: Runtime, mls: Mls
) -> None:
    await _events_connection(runtime, mls, secret="a-token-the-server-does-not-know")
    report = await runtime.engine.sync_all()
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.state == "needs_reauth"
    assert report.run.errors >= 1


async def _row(runtime: Runtime) -> ConnectionRow:
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None
    return row


async def test_a_poll_that_finds_nothing_is_one_request_and_leaves_no_run(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await _events_connection(runtime, mls)
    await runtime.engine.sync_all()
    asked_before = len(sandbox.filters)

    result = await runtime.engine.poll_change_log(await _row(runtime))

    assert (result.outcome, result.report) == ("quiet", None)
    assert len(sandbox.filters) == asked_before + 1
    assert [r.id for r in await runs.recent(runtime.db, 10)] == [1]


async def test_a_poll_that_finds_a_sale_syncs_the_connection_in_a_run_of_its_own(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await _events_connection(runtime, mls)
    await runtime.engine.sync_all()
    sandbox.set_status("E09", "Closed")

    result = await runtime.engine.poll_change_log(await _row(runtime))

    assert result.outcome == "synced" and result.report is not None
    run = result.report.run
    assert (run.trigger, run.scope, run.status_changes) == ("poll", "connection:mls-1", 1)
    assert await status_of(runtime, "E09") == "sold"


async def test_a_poll_leaves_the_full_pass_and_a_connection_another_sync_holds_to_the_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await _events_connection(runtime, mls)
    before_its_first_pass = await runtime.engine.poll_change_log(await _row(runtime))
    assert before_its_first_pass.outcome == "left_to_cycle"
    await runtime.engine.sync_all()
    now = datetime.now(UTC)
    until = iso(now + timedelta(minutes=1))
    wanted = leases.LeaseRequest("mls-1", "another-process", iso(now), until)
    assert await leases.acquire(runtime.db, wanted)
    asked_before = len(sandbox.filters)

    held = await runtime.engine.poll_change_log(await _row(runtime))

    assert held.outcome == "busy" and len(sandbox.filters) == asked_before


def test_events_mode_needs_the_property_resource() -> None:
    with pytest.raises(ValidationError, match="resource must be Property"):
        ConnectionSpec.model_validate(
            {
                "id": "c1",
                "name": "C1",
                "base_url": "https://mls.example.com",
                "mode": "events",
                "resource": "Listing",
            }
        )
