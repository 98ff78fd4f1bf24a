"""Statuses, the RESO -> local mapping and the transition rule. Pure: no I/O, no clock.

Everything that decides what a listing's local status becomes lives here, so that it can be
tested through tables and reused by the cycle, the operations layer and every surface alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import NamedTuple

from daemon.enums import EventType


class LocalStatus(StrEnum):
    """The five statuses a listing can have in mls-sync."""

    COMING_SOON = "coming_soon"
    ACTIVE = "active"
    PENDING = "pending"
    SOLD = "sold"
    OFF_MARKET = "off_market"


# A stored status as read back (NULL: not known yet). An index rather than LocalStatus(...):
# it is read for every listing a cycle checks, and the enum's call costs several times more.
STATUS_OF: Mapping[str | None, LocalStatus | None] = {
    None: None,
    **{status.value: status for status in LocalStatus},
}


class AuditEvent(StrEnum):
    """Why a status row was written to the audit log."""

    FIRST_SEEN = "first_seen"  # the listing had no status yet
    CHANGED = "changed"  # an ordinary change (5.2, 5.5)
    RESTORED = "restored"  # pending -> active (5.4)
    REMOVED = "removed"  # the MLS no longer shows the listing


# Ignoring a value means: no change, a warning recorded for the listing (RESO's Incomplete).
IGNORE = "ignore"

# Data Dictionary 1.7 - 2.1 StandardStatus -> local status (docs/mls-reso.md).
DEFAULT_STANDARD_STATUS_MAP: Mapping[str, str] = {
    "Active": LocalStatus.ACTIVE,
    "Active Under Contract": LocalStatus.PENDING,
    "Pending": LocalStatus.PENDING,
    "Closed": LocalStatus.SOLD,
    "Coming Soon": LocalStatus.COMING_SOON,
    "Canceled": LocalStatus.OFF_MARKET,
    "Expired": LocalStatus.OFF_MARKET,
    "Withdrawn": LocalStatus.OFF_MARKET,
    "Hold": LocalStatus.OFF_MARKET,
    "Delete": LocalStatus.OFF_MARKET,
    "Incomplete": IGNORE,
}

# A listing that disappears from the feed (absent key, 404, MlgCanView=false) is off the market.
REMOVED_STATUS = LocalStatus.OFF_MARKET

# Statuses in which a listing may be (re)published by a person; nothing republishes by itself.
PUBLISHABLE_STATUSES = frozenset({LocalStatus.ACTIVE, LocalStatus.COMING_SOON})

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def status_token(value: str) -> str:
    """Folds the display form ("Active Under Contract") and the enum form
    ("ActiveUnderContract") of a RESO status to one lookup key."""
    return _NOT_ALNUM.sub("", value.casefold())


def is_publishable(status: LocalStatus | None) -> bool:
    return status in PUBLISHABLE_STATUSES


class MlsRecord(NamedTuple):
    """What the MLS said about one listing (only the fields we select). A named tuple, as
    the other records made once per listing a cycle checks are (`Checked`,
    `TrackedListing`): immutable like a frozen dataclass, at half its cost to make."""

    listing_key: str
    standard_status: str | None
    mls_status: str | None
    modification_timestamp: datetime | None = None


# How the records made once per listing a cycle checks are made where that happens: tuple's
# own constructor, bound to the class, given the values in their fields' order. A named
# tuple's generated `__new__` is a Python function, one more frame per record
# (docs/benchmarks.md "The HTTP engine"). Each is typed as its fields are, so that a caller
# is checked as the class would check it. The same for `Checked` below, and for the store's
# `TrackedListing` and `CurrentListing` (daemon/store/records.py).
mls_record_of: Callable[[tuple[str, str | None, str | None, datetime | None]], MlsRecord] = partial(
    tuple.__new__, MlsRecord
)


@dataclass(frozen=True, slots=True)
class Removed:
    """The MLS no longer shows this listing; `reason` says how we know."""

    listing_key: str
    reason: str


Observation = MlsRecord | Removed


@dataclass(frozen=True, slots=True)
class Mapped:
    status: LocalStatus


@dataclass(frozen=True, slots=True)
class Unmappable:
    """The MLS value cannot be turned into a local status; `ignored` marks a known value that
    is deliberately skipped (a warning), as opposed to bad input (an error)."""

    message: str
    ignored: bool = False


MAPPINGS_REMEMBERED = 1024


@dataclass(frozen=True)
class StatusMapping:
    """StandardStatus (and optionally MlsStatus, which wins when it matches) -> local status."""

    standard: Mapping[str, LocalStatus | None]
    mls_status: Mapping[str, LocalStatus]
    # What each pair of values seen maps to, for as long as the mapping is in use (until a
    # reload): a cycle sees a handful of distinct pairs over all its listings, and folding
    # both values for each listing (a regular expression each) was a share of the planning.
    # Bounded, since the values are the server's to choose.
    _seen: dict[tuple[str | None, str | None], Mapped | Unmappable] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def build(
        cls,
        standard: Mapping[str, str] | None = None,
        mls_status: Mapping[str, str] | None = None,
    ) -> StatusMapping:
        """`standard` overrides entries of the default table; values are local statuses or
        "ignore". Raises ValueError naming the bad entry."""
        # Each entry is checked under the key as written, so an error names what is in the file.
        merged = {
            status_token(k): _local_or_none(k, v)
            for k, v in [*DEFAULT_STANDARD_STATUS_MAP.items(), *(standard or {}).items()]
        }
        return cls(
            standard=merged,
            mls_status={status_token(k): _local(k, v) for k, v in (mls_status or {}).items()},
        )

    def map(self, standard_status: str | None, mls_status: str | None) -> Mapped | Unmappable:
        pair = (standard_status, mls_status)
        mapped = self._seen.get(pair)
        if mapped is None:
            mapped = self._map(standard_status, mls_status)
            if len(self._seen) < MAPPINGS_REMEMBERED:
                self._seen[pair] = mapped
        return mapped

    def _map(self, standard_status: str | None, mls_status: str | None) -> Mapped | Unmappable:
        if mls_status and (override := self.mls_status.get(status_token(mls_status))):
            return Mapped(override)
        if standard_status is None or not standard_status.strip():
            return Unmappable("StandardStatus is missing")
        token = status_token(standard_status)
        if token not in self.standard:
            return Unmappable(
                f"unknown StandardStatus {standard_status!r} (MlsStatus {mls_status!r}); "
                "add it to [mls.status_map] if your MLS uses it"
            )
        local = self.standard[token]
        if local is None:
            return Unmappable(f"StandardStatus {standard_status!r} is ignored", ignored=True)
        return Mapped(local)


def _local_or_none(key: str, value: str) -> LocalStatus | None:
    return None if value == IGNORE else _local(key, value)


def _local(key: str, value: str) -> LocalStatus:
    try:
        return LocalStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in LocalStatus)
        raise ValueError(
            f"status {key!r} maps to a value that is not one of: {allowed}, {IGNORE}"
        ) from None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one listing after one observation.

    `new_status` is None when nothing changes. `error` is set when the observation cannot be
    applied (the listing keeps its status); `warning` marks a deliberately ignored value.
    """

    new_status: LocalStatus | None = None
    event: AuditEvent | None = None
    error: str | None = None
    warning: bool = False

    @property
    def changes(self) -> bool:
        return self.new_status is not None


class Checked(NamedTuple):
    """The listing was seen in the MLS; its raw values are kept for audit and display."""

    listing_id: str
    standard_status: str | None
    mls_status: str | None
    modified_at: datetime | None


checked_of: Callable[[tuple[str, str | None, str | None, datetime | None]], Checked] = partial(
    tuple.__new__, Checked
)  # see `mls_record_of`


@dataclass(frozen=True, slots=True)
class Change:
    listing_id: str
    from_status: LocalStatus | None
    to_status: LocalStatus
    standard_status: str | None
    mls_status: str | None
    event: AuditEvent


@dataclass(frozen=True, slots=True)
class Problem:
    listing_id: str
    message: str
    warning: bool = False
    # True: a by-key query of the listing's key alone failed (the server fails on that
    # key), and its later syncs ask it alone, first (docs/reliability.md "One key the
    # server fails on"). False: a key known so whose query of its own was answered. None:
    # the error says neither (a half not asked, the server busy), and the mark stays.
    alone: bool | None = None


@dataclass
class BatchPlan:
    """What one MLS answer writes for a batch of listings: made by the sync
    (`daemon/sync/batch_plan.py`), written by the store (`listings.apply_plans`). The
    listings checked are in `checked`, or, found as their last check left them, in
    `unchanged`: rows the transaction that plans them read, valid in it only."""

    checked: list[Checked] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Checked too, and found as their last check left them (`sync_writes.split_unchanged`):
    # their rows in the store (`CurrentListing.row`), whose check time alone is written.
    unchanged: list[int | str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if not p.warning)

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.warning)


UNCHANGED = Decision()


def decide(current: LocalStatus | None, seen: Observation, mapping: StatusMapping) -> Decision:
    """The MLS always wins (5.5): the local status becomes the mapped MLS status.

    pending -> active is a restoration (5.4). Nothing here ever republishes a post.
    """
    if isinstance(seen, Removed):
        target: LocalStatus = REMOVED_STATUS
    else:
        mapped = mapping.map(seen.standard_status, seen.mls_status)
        if isinstance(mapped, Unmappable):
            return Decision(error=mapped.message, warning=mapped.ignored)
        target = mapped.status
    if target == current:
        return UNCHANGED
    return Decision(new_status=target, event=_event_for(current, target, seen))


def _event_for(current: LocalStatus | None, target: LocalStatus, seen: Observation) -> AuditEvent:
    if current is None:
        return AuditEvent.FIRST_SEEN
    if isinstance(seen, Removed):
        return AuditEvent.REMOVED
    if current == LocalStatus.PENDING and target == LocalStatus.ACTIVE:
        return AuditEvent.RESTORED
    return AuditEvent.CHANGED


def makes_posts_due(status: LocalStatus | None, unpublish_on: Iterable[LocalStatus]) -> bool:
    """A listing in one of `unpublish_on` must have no published post (invariant 2)."""
    return status is not None and status in set(unpublish_on)


def event_type_of(change: Change) -> EventType:
    """The one event a status change is reported as: the most specific type that fits."""
    if change.event == AuditEvent.REMOVED:
        return EventType.LISTING_REMOVED
    if change.event == AuditEvent.RESTORED:
        return EventType.LISTING_RESTORED
    if change.to_status == LocalStatus.SOLD:
        return EventType.LISTING_SOLD
    return EventType.LISTING_STATUS_CHANGED
