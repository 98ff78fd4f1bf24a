"""When a digest goes out: its hour in its user's time zone. Pure. (A failed send waits as a
failed webhook delivery does: daemon/outbound/retry.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> ZoneInfo:
    """The user's zone; UTC for a name the system does not know (the users surface checks
    names, but a digest must still go out)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def digest_due(event_at: datetime, time_zone: str, hour: int) -> datetime:
    """The first `hour`:00 in `time_zone` after `event_at`, in UTC: when the digest that
    reports the event goes out."""
    local = event_at.astimezone(zone(time_zone))
    due = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if due <= local:
        due = (local + timedelta(days=1)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return due.astimezone(UTC)


def digest_day(due_at: datetime, time_zone: str) -> str:
    """The date a digest sent at `due_at` bears: its day in its user's zone."""
    return due_at.astimezone(zone(time_zone)).date().isoformat()
