"""Smart intervals for by_key connections (docs/mls-reso.md "Check tiers"): which tier a
listing is in, when it is next due, and which listings a scheduled cycle asks for. Pure: the
caller gives the time and the listings.

A listing's tier comes from its local status and how recently that changed; its next check is
its last check plus its tier's interval. A listing never answered, or whose last check failed,
is asked at every cycle. Times are ISO text as the store keeps them, so that they compare as
text without parsing a row's worth of dates per listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from daemon.config import CheckIntervalSettings
from daemon.models import LocalStatus
from daemon.store.records import TierGroup, TrackedListing
from daemon.timestamps import iso, parse_iso

# The triggers whose cycles ask only for the due listings: the clock's. A sync a person or a
# program asks for asks for every listing.
SCHEDULED_TRIGGERS = frozenset({"schedule", "startup"})


class Tier(StrEnum):
    UNCHECKED = "unchecked"  # never answered, or its last check failed: every cycle
    RECENT = "recent"  # its status changed within the recent window
    PENDING = "pending"  # pending or coming_soon
    ACTIVE = "active"
    CLOSED = "closed"  # sold or off_market


TIER_ORDER = tuple(Tier)


def tier_of(status: LocalStatus | None, recent: bool, unchecked: bool) -> Tier:
    """`recent`: its status changed within the window; `unchecked`: never answered, or its
    last check failed."""
    if unchecked or status is None:
        return Tier.UNCHECKED
    if recent:
        return Tier.RECENT
    if status in (LocalStatus.PENDING, LocalStatus.COMING_SOON):
        return Tier.PENDING
    if status is LocalStatus.ACTIVE:
        return Tier.ACTIVE
    return Tier.CLOSED


def every(tier: Tier, settings: CheckIntervalSettings) -> timedelta:
    seconds = {
        Tier.UNCHECKED: 0,
        Tier.RECENT: settings.recent_seconds,
        Tier.PENDING: settings.pending_seconds,
        Tier.ACTIVE: settings.active_seconds,
        Tier.CLOSED: settings.closed_seconds,
    }[tier]
    return timedelta(seconds=seconds)


def recent_from(now: datetime, settings: CheckIntervalSettings) -> str:
    """A status changed at or after this time is recent."""
    return iso(now - timedelta(seconds=settings.recent_window_seconds))


def listing_tier(listing: TrackedListing, recent_since: str) -> Tier:
    changed = listing.status_changed_at
    return tier_of(
        listing.status,
        changed is not None and changed >= recent_since,
        listing.last_checked_at is None or listing.failed,
    )


@dataclass(frozen=True)
class Choice:
    """What a scheduled cycle asks for on one connection: the due listings, and the others
    by when they fall due, soonest first (to fill a request the due ones leave part empty:
    asking early never weakens a tier's promise)."""

    due: list[TrackedListing]
    upcoming: list[TrackedListing]


def choose(
    tracked: Iterable[TrackedListing],
    now: datetime,
    settings: CheckIntervalSettings,
    horizon: timedelta = timedelta(0),
) -> Choice:
    """`horizon`: the time to the next scheduled cycle. A listing that falls due before
    then is asked now: left to that cycle, it would be asked up to a cycle late (checked a
    second after a cycle began, it is not quite due when the next one begins)."""
    since = recent_from(now, settings)
    until = iso(now + horizon)
    due: list[TrackedListing] = []
    later: list[tuple[str, TrackedListing]] = []
    for listing in tracked:
        tier = listing_tier(listing, since)
        if tier is Tier.UNCHECKED:
            due.append(listing)
            continue
        assert listing.last_checked_at is not None  # else unchecked
        next_at = iso(parse_iso(listing.last_checked_at) + every(tier, settings))
        if next_at < until or next_at <= iso(now):
            due.append(listing)
        else:
            later.append((next_at, listing))
    later.sort(key=lambda pair: pair[0])
    return Choice(due, [listing for _, listing in later])


@dataclass
class TierSummary:
    listings: int
    every_seconds: int
    next_due: str | None  # when its first listing is next due; None when it has none


def summarize(
    groups: Sequence[TierGroup], now: datetime, settings: CheckIntervalSettings
) -> dict[str, TierSummary]:
    """Per tier (all of them, in order): how many listings, how often they are asked, and
    when the first of them is next due (`now` for unchecked ones)."""
    out = {
        tier.value: TierSummary(0, int(every(tier, settings).total_seconds()), None)
        for tier in TIER_ORDER
    }
    for group in groups:
        tier = tier_of(group.status, group.recent, group.unchecked)
        entry = out[tier.value]
        entry.listings += group.listings
        if tier is Tier.UNCHECKED or group.oldest_check is None:
            due = iso(now)
        else:
            due = iso(parse_iso(group.oldest_check) + every(tier, settings))
        if entry.next_due is None or due < entry.next_due:
            entry.next_due = due
    return out
