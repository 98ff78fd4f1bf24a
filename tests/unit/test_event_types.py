"""Event type filters: exact types, families and `*`, and a clear refusal of the rest."""

from __future__ import annotations

import pytest

from daemon.enums import EventType
from daemon.event_types import UnknownEventType, expand, matches


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["listing.sold"], {EventType.LISTING_SOLD}),
        (["post.*"], {t for t in EventType if t.startswith("post.")}),
        (["*"], set(EventType)),
        (["listing.sold", "listing.*"], {t for t in EventType if t.startswith("listing.")}),
        ([], set()),
    ],
)
def test_a_filter_names_its_types_families_and_all(
    patterns: list[str], expected: set[EventType]
) -> None:
    assert expand(patterns) == expected


@pytest.mark.parametrize("bad", ["listing.sol", "listings.*", "listing", ".*", "post.*.x", ""])
def test_an_entry_naming_no_type_is_refused_by_position_without_its_text(bad: str) -> None:
    with pytest.raises(UnknownEventType) as caught:
        expand(["run.finished", bad])
    assert "entry 2" in str(caught.value)
    assert "listing.sold" in str(caught.value)  # the message lists what is allowed
    if bad:
        assert f" {bad} " not in f" {caught.value} "


def test_an_event_passes_a_filter_that_names_it_or_its_family() -> None:
    assert matches(["listing.*"], "listing.sold")
    assert matches(["run.finished", "post.unpublished"], "post.unpublished")
    assert not matches(["listing.*"], "post.unpublished")
    assert not matches([], "listing.sold")
