"""Check tiers (docs/mls-reso.md "Check tiers"): which tier a listing is in, which listings a
scheduled cycle asks for, and how a connection's tiers are summed up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from daemon.config import CheckIntervalSettings
from daemon.models import LocalStatus
from daemon.store.records import TierGroup, TrackedListing
from daemon.sync.check_tiers import Tier, choose, filled_batches, summarize, tier_of
from daemon.timestamps import iso

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# Recent window 24 h; recent and pending every 5 minutes, active 15, closed 24 h.
TIERS = CheckIntervalSettings(recent_seconds=300, pending_seconds=300)


def _listing(
    key: str,
    status: LocalStatus | None,
    checked_ago: timedelta | None,
    changed_ago: timedelta = timedelta(days=30),
    failed: bool = False,
) -> TrackedListing:
    return TrackedListing(
        f"L-{key}",
        key,
        status,
        iso(NOW - changed_ago),
        None if checked_ago is None else iso(NOW - checked_ago),
        failed,
    )


@pytest.mark.parametrize(
    ("status", "recent", "unchecked", "tier"),
    [
        (None, False, False, Tier.UNCHECKED),
        (LocalStatus.SOLD, True, True, Tier.UNCHECKED),
        (LocalStatus.SOLD, True, False, Tier.RECENT),
        (LocalStatus.PENDING, False, False, Tier.PENDING),
        (LocalStatus.COMING_SOON, False, False, Tier.PENDING),
        (LocalStatus.ACTIVE, False, False, Tier.ACTIVE),
        (LocalStatus.SOLD, False, False, Tier.CLOSED),
        (LocalStatus.OFF_MARKET, False, False, Tier.CLOSED),
    ],
)
def test_a_listing_is_in_the_tier_of_its_status_and_recent_history(
    status: LocalStatus | None, recent: bool, unchecked: bool, tier: Tier
) -> None:
    assert tier_of(status, recent, unchecked) is tier


def test_a_scheduled_cycle_asks_for_the_listings_whose_tier_interval_has_passed() -> None:
    minutes = timedelta(minutes=1)
    tracked = [
        _listing("active-16m", LocalStatus.ACTIVE, 16 * minutes),
        _listing("active-14m", LocalStatus.ACTIVE, 14 * minutes),
        _listing("pending-6m", LocalStatus.PENDING, 6 * minutes),
        _listing("pending-3m", LocalStatus.PENDING, 3 * minutes),
        _listing("sold-2h", LocalStatus.SOLD, 120 * minutes),
        _listing("sold-25h", LocalStatus.SOLD, 25 * 60 * minutes),
        _listing("sold-changed-1h", LocalStatus.SOLD, 6 * minutes, changed_ago=60 * minutes),
        _listing("never-answered", None, None),
        _listing("failed-1m", LocalStatus.OFF_MARKET, minutes, failed=True),
    ]

    choice = choose(tracked, NOW, TIERS)

    assert {t.listing_key for t in choice.due} == {
        "active-16m",
        "pending-6m",
        "sold-25h",
        "sold-changed-1h",
        "never-answered",
        "failed-1m",
    }
    # The others, soonest due first: they fill the room the due ones leave in a request.
    assert [t.listing_key for t in choice.upcoming] == ["active-14m", "pending-3m", "sold-2h"]


def test_a_listing_due_before_the_next_cycle_is_asked_now_not_a_cycle_late() -> None:
    """Checked a few seconds into the last cycle, it is not quite due when this one starts."""
    tracked = [_listing("A", LocalStatus.ACTIVE, timedelta(minutes=15) - timedelta(seconds=5))]

    assert choose(tracked, NOW, TIERS).due == []
    assert [t.listing_key for t in choose(tracked, NOW, TIERS, timedelta(minutes=5)).due] == ["A"]


def test_with_tiers_of_its_own_a_live_listing_is_asked_as_often_as_configured() -> None:
    tiers = CheckIntervalSettings(active_seconds=60, recent_window_seconds=0)
    tracked = [_listing("A", LocalStatus.ACTIVE, timedelta(seconds=61))]

    assert [t.listing_key for t in choose(tracked, NOW, tiers).due] == ["A"]
    assert choose(tracked, NOW, TIERS).due == []


def test_a_live_tier_slower_than_15_minutes_is_refused() -> None:
    with pytest.raises(ValueError, match="active_seconds"):
        CheckIntervalSettings(active_seconds=901)


def test_the_summary_counts_each_tier_and_says_when_it_is_next_due() -> None:
    checked = iso(NOW - timedelta(minutes=10))
    older = iso(NOW - timedelta(minutes=12))
    groups = [
        TierGroup(LocalStatus.ACTIVE, False, False, 7, checked),
        TierGroup(LocalStatus.ACTIVE, False, False, 3, older),
        TierGroup(LocalStatus.SOLD, False, False, 5, checked),
        TierGroup(LocalStatus.SOLD, True, False, 2, checked),
        TierGroup(None, False, True, 1, None),
    ]

    summary = summarize(groups, NOW, TIERS)

    assert list(summary) == ["unchecked", "recent", "pending", "active", "closed"]
    assert summary["active"].listings == 10
    assert summary["active"].next_due == iso(NOW + timedelta(minutes=3))  # the oldest check
    assert summary["closed"].listings == 5
    assert summary["closed"].next_due == iso(NOW + timedelta(hours=23, minutes=50))
    assert (summary["recent"].listings, summary["recent"].every_seconds) == (2, 300)
    assert (summary["unchecked"].listings, summary["unchecked"].next_due) == (1, iso(NOW))
    assert (summary["pending"].listings, summary["pending"].next_due) == (0, None)


def _split(per_request: int) -> Callable[[list[str]], list[list[str]]]:
    return lambda keys: [keys[i : i + per_request] for i in range(0, len(keys), per_request)]


def test_a_request_with_room_is_filled_with_the_soonest_due_and_no_request_is_added() -> None:
    due = ["D1", "D2", "D3"]
    soon = [_listing(f"U{n}", LocalStatus.SOLD, timedelta(hours=1)) for n in range(9)]

    batches, added = filled_batches(due, iter(soon), 5, _split(5))

    assert batches == [["D1", "D2", "D3", "U0", "U1"]]
    assert [t.listing_key for t in added] == ["U0", "U1"]


def test_one_key_a_request_leaves_no_room_to_fill() -> None:
    soon = [_listing("U0", LocalStatus.SOLD, timedelta(hours=1))]

    assert filled_batches(["D1", "D2"], iter(soon), 1, _split(1)) == ([["D1"], ["D2"]], [])


def test_keys_that_would_need_another_request_are_left_out() -> None:
    """A URL that holds fewer keys than the batch size: the fill shrinks until it fits."""
    soon = [_listing(f"U{n}", LocalStatus.SOLD, timedelta(hours=1)) for n in range(9)]

    batches, added = filled_batches(["D1"], iter(soon), 5, _split(3))

    assert batches == [["D1", "U0", "U1"]] and [t.listing_key for t in added] == ["U0", "U1"]
