"""Cycle slots: every daemon on one database cuts time alike, and a slot holds one cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.sync.cycle_slots import (
    catch_up_seconds,
    first_slot,
    slot_bounds,
    slot_start,
    synced_in_slot,
)
from daemon.timestamps import iso

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # a whole number of 900 s since the epoch


def test_a_slot_starts_at_the_databases_offset_past_each_interval() -> None:
    assert slot_start(NOON + timedelta(seconds=899), 900) == NOON
    assert slot_start(NOON + timedelta(seconds=900), 900) == NOON + timedelta(seconds=900)
    offset = 86_399  # the offset is taken modulo the interval: 899 s here
    assert slot_start(NOON + timedelta(seconds=898), 900, offset) == NOON - timedelta(seconds=1)
    assert slot_start(NOON + timedelta(seconds=899), 900, offset) == NOON + timedelta(seconds=899)


def test_the_clocks_first_slot_is_one_of_the_slots() -> None:
    for offset in (0, 7, 901, 86_399):
        start = first_slot(900, offset)
        later = start + timedelta(seconds=900 * 1_000_000)
        assert slot_start(later, 900, offset) == later


def test_a_sync_counts_for_the_slot_it_began_in_from_its_first_microsecond_to_its_last() -> None:
    slot = slot_bounds(NOON, 900)
    assert synced_in_slot(iso(NOON), slot)
    assert synced_in_slot(iso(NOON + timedelta(seconds=900, microseconds=-1)), slot)
    assert not synced_in_slot(iso(NOON - timedelta(microseconds=1)), slot)
    assert not synced_in_slot(None, slot)


def test_a_sync_begun_after_the_slot_by_a_clock_since_set_back_is_not_the_slots() -> None:
    assert not synced_in_slot(iso(NOON + timedelta(hours=3)), slot_bounds(NOON, 900))


def test_the_catch_up_looks_ten_times_within_the_shorter_of_the_slot_and_the_lease() -> None:
    assert catch_up_seconds(900, 600) == 60
    assert catch_up_seconds(300, 600) == 30
    assert catch_up_seconds(10, 30) == 5
