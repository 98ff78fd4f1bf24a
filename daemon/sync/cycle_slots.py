"""One cycle per interval for each connection, however many daemons share the database
(docs/postgresql.md "Several daemons"). Pure: the caller gives the time.

Time is cut into slots of the cycle interval, counted from the Unix epoch plus an offset of
the database's own (chosen at random once, kept in its `meta` table), so that every daemon
on one database cuts it alike, and installations apart from each other do not all ask their
MLS servers at the same minutes. The clock's cycle of a slot, and its catch-ups, sync only the
connections no process has synced since the slot began: the first daemon to reach a
connection takes it, the others leave it. A connection whose daemon died is left unsynced in
its slot, and the next catch-up of any daemon takes it. A cycle a person or a program asks
for syncs every connection, as always.

A slot's work is done by a sync of the whole connection that began in the slot: one that
began in the slot before and ended in this one read its first listings before this slot, and
they are due again in it; a sync of one listing is no sync of its connection; and a sync
"begun" after the slot's end (its time left there by a clock since set back) is not this
slot's either.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.timestamps import iso

# The triggers whose cycles share a slot's work: the clock's, and its catch-ups. The startup
# cycle syncs everything, as a restart always has.
SHARED_TRIGGERS = frozenset({"schedule", "catch_up"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# The range of the database's offset: any second of a day (taken modulo the interval).
OFFSET_RANGE_SECONDS = 86_400


def slot_start(now: datetime, interval_seconds: int, offset_seconds: int = 0) -> datetime:
    """The start of the slot `now` is in."""
    elapsed = int((now - EPOCH).total_seconds()) - offset_seconds
    return EPOCH + timedelta(seconds=offset_seconds + elapsed - elapsed % interval_seconds)


def first_slot(interval_seconds: int, offset_seconds: int) -> datetime:
    """A slot's start, from which every later one is a whole number of intervals on."""
    return EPOCH + timedelta(seconds=offset_seconds % interval_seconds)


def slot_bounds(slot: datetime, interval_seconds: int) -> tuple[str, str]:
    """The slot beginning at `slot`, from its start to the next one's, as ISO text."""
    return iso(slot), iso(slot + timedelta(seconds=interval_seconds))


def synced_in_slot(last_sync_started_at: str | None, bounds: tuple[str, str]) -> bool:
    """Whether a sync of the connection began within `bounds` (ISO text compares as time)."""
    start, end = bounds
    return last_sync_started_at is not None and start <= last_sync_started_at < end


def catch_up_seconds(interval_seconds: int, lease_seconds: int) -> int:
    """How often a daemon looks for connections left unsynced in the slot: a tenth of the
    shorter of the interval and the lease, and no more often than every 5 seconds. A
    connection whose daemon died is free once that daemon is known gone: at once on this
    host, when its process lease runs out on another (daemon/sync/process_lease.py); it is
    synced by the next look after that."""
    return max(5, min(interval_seconds, lease_seconds) // 10)
