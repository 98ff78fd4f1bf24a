"""When mail goes out: a digest's hour in its user's time zone, and the wait before a failed
send is tried again. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FIRST_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 3600.0


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


def retry_delay(attempt: int, jitter: float) -> float:
    """Seconds before send attempt `attempt` + 1, after `attempt` (1, 2, ...) failed: doubling
    from 30 s up to an hour, each scaled by 0.5 to 1 (`jitter` in [0, 1)) so that many
    messages refused together do not come back together."""
    base: float = min(FIRST_RETRY_SECONDS * 2 ** min(max(attempt, 1) - 1, 20), MAX_RETRY_SECONDS)
    return base * (0.5 + jitter / 2)
