"""Smart intervals for by_key connections (docs/mls-reso.md "Check tiers"): which tier a
listing is in, when it is next due, and which listings a scheduled cycle asks for. Pure: the
caller gives the time and the listings.

A listing's tier comes from its local status and how recently that changed; its next check is
its last check plus its tier's interval. A listing never answered, or whose last check failed,
is asked at every cycle. Times are ISO text as the store keeps them, so that they compare as
text without parsing a row's worth of dates per listing.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from daemon.config import CheckIntervalSettings
from daemon.models import LocalStatus
from daemon.store.records import TierGroup, TrackedListing
from daemon.timestamps import iso, parse_iso

# The triggers whose cycles ask only for the due listings: the clock's. A sync a person or a
# program asks for asks for every listing.
SCHEDULED_TRIGGERS = frozenset({"schedule", "startup", "catch_up"})


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
    by when they fall due, soonest first (read lazily: only as many as fill the room the due
    ones leave in their requests; asking early never weakens a tier's promise)."""

    due: list[TrackedListing]
    upcoming: Iterator[TrackedListing]

    def first_asked(self) -> list[TrackedListing]:
        """The due listings; with none due, the soonest all the same: a cycle that sent no
        request would count as a read of the MLS, and a refused credential or a server
        down would go unseen until a listing fell due."""
        return self.due or list(itertools.islice(self.upcoming, 1))


# How far ahead of the clock a listing's last check may be dated and still count: a few
# seconds between the database's clock and this process's, no more.
CHECKED_AHEAD = timedelta(seconds=60)


def choose(
    tracked: Iterable[TrackedListing],
    now: datetime,
    settings: CheckIntervalSettings,
    horizon: timedelta = timedelta(0),
) -> Choice:
    """`horizon`: the time to the next scheduled cycle. A listing that falls due by then is
    asked now: left to that cycle, it would be asked up to a cycle late (checked a second
    after a cycle began, it is not quite due when the next one begins).

    Each tier's last checks are compared with one time, the tier's own (text against text):
    a connection may hold many listings, and a cycle must not parse a date for each."""
    since = recent_from(now, settings)
    latest_due = {tier: iso(now + horizon - every(tier, settings)) for tier in TIER_ORDER}
    # A check dated ahead of the clock was made while the clock ran fast (it has since been
    # set back): not a check to wait from, or the listing would wait as long as the clock was
    # ahead.
    ahead = iso(now + CHECKED_AHEAD)
    due: list[TrackedListing] = []
    later: dict[Tier, list[TrackedListing]] = {tier: [] for tier in TIER_ORDER}
    for listing in tracked:
        tier = listing_tier(listing, since)
        checked = str(listing.last_checked_at)
        if tier is Tier.UNCHECKED or checked <= latest_due[tier] or checked > ahead:
            due.append(listing)
        else:
            later[tier].append(listing)

    def by_next_check(tier: Tier, waiting: list[TrackedListing]) -> Iterator[Waiting]:
        """A tier's listings by when they fall due: in the order of their last checks."""
        waiting.sort(key=lambda listing: str(listing.last_checked_at))
        step = every(tier, settings)
        return ((parse_iso(str(t.last_checked_at)) + step, t) for t in waiting)

    merged = heapq.merge(*(by_next_check(*tier) for tier in later.items()), key=_due_at)
    return Choice(due, (listing for _, listing in merged))


Waiting = tuple[datetime, TrackedListing]  # a listing not due yet, and when it falls due


def _due_at(waiting: Waiting) -> datetime:
    return waiting[0]


def filled_batches(
    due_keys: list[str],
    upcoming: Iterable[TrackedListing],
    per_request: int,
    split: Callable[[list[str]], list[list[str]]],
) -> tuple[list[list[str]], list[TrackedListing]]:
    """The requests for `due_keys` (`split` makes them, as the connection batches keys), with
    as many of `upcoming` added as fit in the same number of requests of at most
    `per_request` keys (the URL length may allow fewer); and the listings added."""
    batches = split(due_keys)
    if not batches:
        return batches, []
    asked = set(due_keys)
    room = len(batches) * per_request - len(due_keys)
    extra = [t for t in itertools.islice(upcoming, room) if t.listing_key not in asked]
    while extra:
        filled = split(due_keys + [t.listing_key for t in extra])
        if len(filled) <= len(batches):
            return filled, extra
        extra = extra[: len(extra) // 2]
    return batches, []


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
