"""The mapping and the transition rule, through tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.models import (
    AuditEvent,
    LocalStatus,
    MlsRecord,
    Removed,
    StatusMapping,
    decide,
    is_publishable,
    makes_posts_due,
)
from daemon.sync.batch_plan import plan_batch

DEFAULT = StatusMapping.build()
S = LocalStatus


@pytest.mark.parametrize(
    ("standard", "expected"),
    [
        ("Active", S.ACTIVE),
        ("Active Under Contract", S.PENDING),
        ("ActiveUnderContract", S.PENDING),
        ("Pending", S.PENDING),
        ("Closed", S.SOLD),
        ("Coming Soon", S.COMING_SOON),
        ("ComingSoon", S.COMING_SOON),
        ("Canceled", S.OFF_MARKET),
        ("Expired", S.OFF_MARKET),
        ("Withdrawn", S.OFF_MARKET),
        ("Hold", S.OFF_MARKET),
        ("Delete", S.OFF_MARKET),
        ("closed", S.SOLD),
        ("  Active  ", S.ACTIVE),
    ],
)
def test_every_reso_standard_status_maps_to_its_local_status(standard: str, expected: S) -> None:
    decision = decide(None, MlsRecord("K", standard, None), DEFAULT)
    assert decision.new_status == expected


@pytest.mark.parametrize(
    ("standard", "fragment", "warning"),
    [
        (None, "missing", False),
        ("", "missing", False),
        ("Sold Pending Paperwork", "unknown StandardStatus", False),
        ("Incomplete", "ignored", True),
    ],
)
def test_unusable_statuses_change_nothing_and_say_why(
    standard: str | None, fragment: str, warning: bool
) -> None:
    decision = decide(S.ACTIVE, MlsRecord("K", standard, None), DEFAULT)
    assert decision.new_status is None
    assert decision.error is not None and fragment in decision.error
    assert decision.warning is warning


@pytest.mark.parametrize(
    ("current", "standard", "new", "event"),
    [
        (None, "Active", S.ACTIVE, AuditEvent.FIRST_SEEN),
        (S.ACTIVE, "Pending", S.PENDING, AuditEvent.CHANGED),
        (S.PENDING, "Active", S.ACTIVE, AuditEvent.RESTORED),
        (S.PENDING, "Closed", S.SOLD, AuditEvent.CHANGED),
        (S.SOLD, "Active", S.ACTIVE, AuditEvent.CHANGED),  # the MLS wins, even "backwards"
        (S.OFF_MARKET, "Active", S.ACTIVE, AuditEvent.CHANGED),
        (S.COMING_SOON, "Active", S.ACTIVE, AuditEvent.CHANGED),
        (S.ACTIVE, "Active", None, None),
    ],
)
def test_transitions(
    current: S | None, standard: str, new: S | None, event: AuditEvent | None
) -> None:
    decision = decide(current, MlsRecord("K", standard, None), DEFAULT)
    assert (decision.new_status, decision.event) == (new, event)


@pytest.mark.parametrize(
    ("current", "new", "event"),
    [
        (S.ACTIVE, S.OFF_MARKET, AuditEvent.REMOVED),
        (S.PENDING, S.OFF_MARKET, AuditEvent.REMOVED),
        (S.SOLD, S.OFF_MARKET, AuditEvent.REMOVED),
        (S.OFF_MARKET, None, None),
        (None, S.OFF_MARKET, AuditEvent.FIRST_SEEN),  # never seen before, already gone
    ],
)
def test_a_listing_the_mls_no_longer_has_goes_off_market(
    current: S | None, new: S | None, event: AuditEvent | None
) -> None:
    decision = decide(current, Removed("K", "gone"), DEFAULT)
    assert (decision.new_status, decision.event) == (new, event)


def test_configured_entries_override_the_default_table() -> None:
    mapping = StatusMapping.build({"Active Under Contract": "active", "Hold": "ignore"})
    assert decide(None, MlsRecord("K", "ActiveUnderContract", None), mapping).new_status == S.ACTIVE
    assert decide(S.ACTIVE, MlsRecord("K", "Hold", None), mapping).warning is True


def test_a_matching_mls_status_wins_over_the_standard_status() -> None:
    mapping = StatusMapping.build(mls_status={"Sold - Awaiting Funding": "sold"})
    record = MlsRecord("K", "Pending", "Sold - Awaiting Funding")
    assert decide(S.ACTIVE, record, mapping).new_status == S.SOLD
    assert decide(S.ACTIVE, MlsRecord("K", "Pending", "Other"), mapping).new_status == S.PENDING


def test_a_mapping_to_an_unknown_local_status_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'Closed' maps to a value that is not"):
        StatusMapping.build({"Closed": "gone"})


@pytest.mark.parametrize(
    ("status", "publishable", "due"),
    [
        (S.ACTIVE, True, False),
        (S.COMING_SOON, True, False),
        (S.PENDING, False, False),
        (S.SOLD, False, True),
        (S.OFF_MARKET, False, False),
        (None, False, False),
    ],
)
def test_publishable_and_due(status: S | None, publishable: bool, due: bool) -> None:
    assert is_publishable(status) is publishable
    assert makes_posts_due(status, [S.SOLD]) is due


@pytest.mark.parametrize(
    ("status", "due"),
    [(S.SOLD, True), (S.OFF_MARKET, True), (S.PENDING, False), (S.ACTIVE, False), (None, False)],
)
def test_posts_come_down_for_every_configured_status(status: S | None, due: bool) -> None:
    assert makes_posts_due(status, [S.SOLD, S.OFF_MARKET]) is due


def test_a_batch_plan_has_one_change_per_changed_listing_and_keeps_failures_apart() -> None:
    plan = plan_batch(
        current={"a": S.ACTIVE, "b": S.ACTIVE, "c": S.PENDING, "d": None},
        observations=[
            ("a", MlsRecord("A", "Closed", "Sold")),
            ("b", MlsRecord("B", "Active", None)),
            ("c", MlsRecord("C", "Nonsense", None)),
            ("gone-locally", MlsRecord("G", "Closed", None)),
        ],
        failures=[("d", "not checked: timeout")],
        mapping=DEFAULT,
    )
    assert [(c.listing_id, c.from_status, c.to_status) for c in plan.changes] == [
        ("a", S.ACTIVE, S.SOLD)
    ]
    assert [c.listing_id for c in plan.checked] == ["a", "b", "c"]
    assert [(p.listing_id, p.warning) for p in plan.problems] == [("c", False), ("d", False)]


_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["Active", "active under contract", "Closed", "Weird", " ", "Pending"]),
    st.text(max_size=12),
)


@given(st.lists(st.tuples(_VALUES, _VALUES), max_size=40))
def test_a_mapping_answers_each_pair_of_values_as_it_did_the_first_time(
    pairs: list[tuple[str | None, str | None]],
) -> None:
    """One mapping serves a whole cycle and remembers what it answered: every answer is the
    one a new mapping gives, whatever came before, an MlsStatus override included."""
    shared = StatusMapping.build(mls_status={"Contingent": "pending"})
    for standard, mls in pairs:
        fresh = StatusMapping.build(mls_status={"Contingent": "pending"})
        assert shared.map(standard, mls) == fresh.map(standard, mls)
        assert shared.map(standard, "Contingent") == fresh.map(standard, "Contingent")
