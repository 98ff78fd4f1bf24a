"""The store's time text: UTC, fixed width, microseconds and a Z, whatever zone a time came in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from daemon.timestamps import iso, parse_iso

ZONES = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Times that stay within years 1-9999 in UTC, whatever their zone.
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES
)


@given(MOMENTS)
def test_any_time_is_written_as_its_utc_iso_text_and_read_back_the_same(moment: datetime) -> None:
    text = iso(moment)
    assert text == moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"
    assert len(text) == len("2026-01-01T00:00:00.000000Z")
    assert parse_iso(text) == moment


@given(MOMENTS, MOMENTS)
def test_text_order_is_time_order(a: datetime, b: datetime) -> None:
    assert (iso(a) < iso(b)) == (a < b)
