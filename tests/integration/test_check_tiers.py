"""Check tiers on the engine, against the sandbox MLS over real HTTP (docs/mls-reso.md "Check
tiers"): a scheduled cycle asks a by_key connection only for its due listings, a sync someone
asks for asks for all of them, and what the tiers hold is shown per connection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from daemon.composition import Runtime
from daemon.config import CheckIntervalSettings
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.sandbox.faults import Fault
from daemon.specs import ListingSpec
from daemon.store import listings
from daemon.timestamps import iso
from tests.helpers import Mls, add_connection, status_of, track

pytestmark = pytest.mark.both_databases

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
# Recent and pending every 5 minutes, active 15, closed a day; "recent" for half an hour only:
# the scenario's first sync makes every listing recent (its first status), and it should not
# take a day to leave that tier.
TIERS = CheckIntervalSettings(recent_window_seconds=1800, recent_seconds=300, pending_seconds=300)
STATUSES = {"A1": "Active", "A2": "Active", "P1": "Pending", "S1": "Closed", "S2": "Closed"}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def _prepared(runtime: Runtime, mls: Mls, batch_size: int = 1) -> Clock:
    """Five listings, all answered once at T0 by a sync someone asked for; the engine on a
    clock the test moves. One key per request unless told: each request is one listing."""
    sandbox, url = mls
    for key, status in STATUSES.items():
        sandbox.put(key, status)
    await add_connection(runtime, url, batch_size=batch_size)
    await track(runtime, "mls-1", list(STATUSES))
    runtime.engine.apply_settings(runtime.settings.model_copy(update={"check_intervals": TIERS}))
    clock = Clock()
    runtime.engine.clock = clock
    report = await runtime.engine.sync_all("manual")
    assert report.run.listings_checked == 5
    return clock


async def _asked_at(runtime: Runtime, when: datetime) -> set[str]:
    rows = await listings.list_some(runtime.db, "mls-1", None, 100)
    return {r.listing_key for r in rows if r.last_checked_at == iso(when)}


def _requests(mls: Mls) -> Callable[[], int]:
    return lambda: sum(mls[0].requests.values())


async def test_a_scheduled_cycle_asks_only_for_the_listings_whose_tier_is_due(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox = mls[0]
    clock = await _prepared(runtime, mls)
    requests = _requests(mls)

    # An hour on, nothing is recent: live listings are due, sold ones are not (a day).
    sandbox.set_status("S1", "Active")  # back on the market: found within a day
    clock.now = T1 = T0 + 60 * MINUTE
    before = requests()
    await runtime.engine.sync_all("schedule")
    assert await _asked_at(runtime, T1) == {"A1", "A2", "P1"}
    assert requests() - before == 3
    assert await status_of(runtime, "S1") == "sold"

    # Six minutes later only the pending listing is due (5 minutes); active ones wait.
    sandbox.set_status("A1", "Closed")
    clock.now = T2 = T1 + 6 * MINUTE
    await runtime.engine.sync_all("schedule")
    assert await _asked_at(runtime, T2) == {"P1"}
    assert await status_of(runtime, "A1") == "active"

    # Fifteen minutes after their last check the active ones are asked: the sale is found.
    # (The pending one too: due before the next cycle, five minutes on, it is asked now.)
    clock.now = T3 = T1 + 15 * MINUTE
    await runtime.engine.sync_all("schedule")
    assert await _asked_at(runtime, T3) == {"A1", "A2", "P1"}
    assert await status_of(runtime, "A1") == "sold"

    # A1 changed just now: it is recent, asked every 5 minutes however it is sold.
    clock.now = T4 = T3 + 6 * MINUTE
    await runtime.engine.sync_all("schedule")
    assert await _asked_at(runtime, T4) == {"A1", "P1"}

    # A day after their last check, the sold listings are asked: S1 is active again. (A1,
    # sold since T3 and asked at T4, waits for its own day.)
    clock.now = T5 = T0 + timedelta(hours=24, minutes=1)
    await runtime.engine.sync_all("schedule")
    assert await _asked_at(runtime, T5) == {"A2", "P1", "S1", "S2"}
    assert await status_of(runtime, "S1") == "active"


async def test_a_sync_someone_asks_for_asks_for_every_listing(runtime: Runtime, mls: Mls) -> None:
    sandbox = mls[0]
    clock = await _prepared(runtime, mls)
    sandbox.set_status("S1", "Active")

    clock.now = T1 = T0 + 60 * MINUTE
    report = await runtime.engine.sync_all("signal")

    assert report.run.listings_checked == 5
    assert await _asked_at(runtime, T1) == set(STATUSES)
    assert await status_of(runtime, "S1") == "active"


async def test_room_left_in_a_request_is_filled_with_the_listings_due_soonest(
    runtime: Runtime, mls: Mls
) -> None:
    clock = await _prepared(runtime, mls, batch_size=50)
    requests = _requests(mls)

    clock.now = T1 = T0 + 60 * MINUTE
    before = requests()
    report = await runtime.engine.sync_all("schedule")

    # Three were due; the sold two rode in the same request, for nothing.
    assert requests() - before == 1
    assert report.run.listings_checked == 5
    assert await _asked_at(runtime, T1) == set(STATUSES)


async def test_a_listing_whose_check_failed_is_asked_again_at_the_next_scheduled_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox = mls[0]
    clock = await _prepared(runtime, mls)
    sandbox.faults.add(Fault("status", status=500, times=1000, matching="S1"))
    await runtime.engine.sync_all("manual")  # S1's check fails: it is unchecked
    sandbox.faults.clear()
    sandbox.set_status("S1", "Active")
    sandbox.set_status("S2", "Active")

    # An hour on (nothing is recent): S1's failed check makes it due, S2's day is not over.
    clock.now = T1 = T0 + 60 * MINUTE
    await runtime.engine.sync_all("schedule")

    assert await _asked_at(runtime, T1) == {"A1", "A2", "P1", "S1"}
    assert await status_of(runtime, "S1") == "active"
    assert await status_of(runtime, "S2") == "sold"


async def test_a_listing_pointed_at_another_record_is_asked_at_the_next_scheduled_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """Its check times were the old record's: the new one is unchecked until it answers."""
    sandbox = mls[0]
    clock = await _prepared(runtime, mls)
    sandbox.put("X9", "Active")
    await listings.add_many(
        runtime.db, [ListingSpec(id="L-S1", connection_id="mls-1", listing_key="X9")], iso(T0)
    )

    clock.now = T1 = T0 + 60 * MINUTE
    await runtime.engine.sync_all("schedule")

    assert "X9" in await _asked_at(runtime, T1)
    assert await status_of(runtime, "S1") == "active"  # L-S1, now X9's


async def test_a_connection_with_no_listing_due_still_sends_a_request(
    runtime: Runtime, mls: Mls
) -> None:
    """A cycle that sent nothing would count as a read of the MLS: a refused credential
    would go unseen until a listing fell due."""
    clock = await _prepared(runtime, mls)
    requests = _requests(mls)
    clock.now = T0 + 60 * MINUTE
    await runtime.engine.sync_all("schedule")

    clock.now = T0 + 62 * MINUTE  # nothing is due for three more minutes
    before = requests()
    # The daemon started again: its first cycle asks for the due listings only. (The clock's
    # next cycle, in this slot, would leave the connection alone: it was synced in it.)
    report = await runtime.engine.sync_all("startup")

    assert requests() - before == 1
    assert report.run.listings_checked == 1


async def test_a_connection_shows_its_listings_in_each_tier_and_when_each_is_next_due(
    runtime: Runtime, mls: Mls
) -> None:
    clock = await _prepared(runtime, mls)
    clock.now = T1 = T0 + 60 * MINUTE
    await runtime.engine.sync_all("schedule")
    ops = Operations.on(
        OpsContext(runtime.db, runtime.box, check_intervals=TIERS, clock=lambda: T1)
    )

    tiers = (await ops.connections.detail("mls-1"))["check_tiers"]

    assert {name: tier["listings"] for name, tier in tiers.items()} == {
        "unchecked": 0,
        "recent": 0,
        "pending": 1,
        "active": 2,
        "closed": 2,
    }
    assert tiers["pending"]["next_due"] == iso(T1 + 5 * MINUTE)
    assert tiers["active"]["next_due"] == iso(T1 + 15 * MINUTE)
    assert tiers["closed"]["next_due"] == iso(T0 + timedelta(hours=24))
    assert tiers["closed"]["every_seconds"] == 86_400


SECOND = timedelta(seconds=1)
ACTIVE = ["A1", "A2", "A3"]


async def _three_active(runtime: Runtime, mls: Mls, checked_at: datetime) -> Clock:
    """Three active listings, one key a request, answered at `checked_at` by a sync someone
    asked for; the default tiers (every 15 minutes for a live status), and leases longer
    than the test's clock moves."""
    sandbox, url = mls
    for key in ACTIVE:
        sandbox.put(key, "Active")
    await add_connection(runtime, url, batch_size=1)
    await track(runtime, "mls-1", ACTIVE)
    sync = runtime.settings.sync.model_copy(update={"lease_seconds": 3600})
    runtime.engine.apply_settings(runtime.settings.model_copy(update={"sync": sync}))
    clock = Clock()
    clock.now = checked_at
    runtime.engine.clock = clock
    await runtime.engine.sync_all("manual")
    return clock


async def test_a_sync_of_one_listing_does_not_count_as_its_connections_sync_in_the_slot(
    runtime: Runtime, mls: Mls
) -> None:
    """Someone syncs A1 alone at 12:15:05, before the 12:15 slot's clock cycle begins: that
    cycle still asks for A2 (checked at 12:00:20, due), whose sale is found."""
    clock = await _three_active(runtime, mls, T0 + 20 * SECOND)
    mls[0].set_status("A2", "Closed")
    clock.now = T0 + 15 * MINUTE + 5 * SECOND
    await runtime.engine.sync_listing("L-A1", "manual")

    clock.now = T0 + 15 * MINUTE + 25 * SECOND
    await runtime.engine.sync_all("schedule")

    assert await status_of(runtime, "A2") == "sold"


async def test_a_sync_that_ends_in_the_next_slot_does_not_count_as_that_slots_sync(
    runtime: Runtime, mls: Mls
) -> None:
    """A sync begins at 12:05 and takes 12 minutes (a rate-limited server, say): A1 is asked
    at its start. The 12:15 slot's cycle, run once it ends, must ask A1 again (due at
    12:20), not take the sync that began in the slot before for this slot's."""
    clock = await _three_active(runtime, mls, T0 - 10 * MINUTE)
    clock.now = T0 + 5 * MINUTE

    def slow(*_: object) -> None:
        clock.now += 4 * MINUTE

    runtime.engine.on_progress = slow
    await runtime.engine.sync_all("startup")  # A1 at 12:05, A2 at 12:09, A3 at 12:13
    runtime.engine.on_progress = lambda *_: None
    mls[0].set_status("A1", "Closed")

    clock.now = T0 + 17 * MINUTE + 5 * SECOND
    await runtime.engine.sync_all("schedule")

    assert await status_of(runtime, "A1") == "sold"


async def test_check_times_left_in_the_future_by_a_clock_set_back_do_not_put_checks_off(
    runtime: Runtime, mls: Mls
) -> None:
    """The listings were checked while the clock ran three hours fast; once it is set right,
    a scheduled cycle asks for them all, not only for the one due soonest."""
    clock = await _three_active(runtime, mls, T0 + 3 * 60 * MINUTE)
    mls[0].set_status("A2", "Closed")

    clock.now = T0 + 15 * MINUTE + 25 * SECOND
    await runtime.engine.sync_all("schedule")

    assert await status_of(runtime, "A2") == "sold"
