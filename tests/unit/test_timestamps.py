"""The store's time text: UTC, fixed width, microseconds and a Z, whatever zone a time came in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from daemon.timestamps import is_iso_of, iso, parse_iso

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


@given(MOMENTS, MOMENTS)
def test_a_time_text_reads_as_a_time_only_when_it_is_that_times_text(
    a: datetime, b: datetime
) -> None:
    assert is_iso_of(iso(a), a)
    assert is_iso_of(iso(a), b) == (iso(a) == iso(b))


@given(MOMENTS, st.sampled_from(["+00:00", " ", ",", "W"]))
def test_the_same_time_written_another_way_does_not_read_as_its_text(
    moment: datetime, other: str
) -> None:
    """The store's text only: the same moment in another form is written anew."""
    text = iso(moment)
    others = {
        "+00:00": text[:-1] + "+00:00",  # another zone's form
        " ": text[:10] + " " + text[11:],  # a space for the T
        ",": text[:19] + "," + text[20:],  # a comma before the fraction
        "W": moment.astimezone(UTC).strftime("%G-W%V-%u") + text[10:],  # a week date
    }
    assert not is_iso_of(others[other], moment)
    assert not is_iso_of("2026-01-01T00:00:0x.000000Z", moment)


def test_midnight_written_as_the_24th_hour_does_not_read_as_the_stores_text() -> None:
    """ISO 8601 allows 24:00 for the end of a day, which newer Pythons read as the next
    day's midnight: not `iso`'s form, so written anew. (It can fail only on a Python whose
    `fromisoformat` reads 24:00; 3.11 refuses it.)"""
    assert not is_iso_of("2026-01-01T24:00:00.000000Z", datetime(2026, 1, 2, tzinfo=UTC))
