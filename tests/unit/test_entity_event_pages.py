"""Reading a page of RESO's change log (daemon/mls/entity_events.py): nothing trusted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.mls.entity_events import parse_event_page
from daemon.mls.payload import BadPayload


def _body(*events: Any, **extra: Any) -> bytes:
    return json.dumps({"value": list(events), **extra}).encode()


def _event(sequence: Any, key: Any = "K1", resource: Any = "Property") -> dict[str, Any]:
    return {"EntityEventSequence": sequence, "ResourceName": resource, "ResourceRecordKey": key}


def test_a_page_gives_its_events_their_listings_once_and_where_it_ends() -> None:
    page = parse_event_page(
        _body(_event(5), _event(9, "K2"), _event(12, "M1", "Member"), _event(13))
    )
    assert [e.sequence for e in page.events] == [5, 9, 12, 13]
    assert page.keys_of("Property") == ["K1", "K2"]  # Member events are not
    assert page.keys_of("Member") == ["M1"]
    assert (page.first_sequence, page.last_sequence, page.size) == (5, 13, 4)


@pytest.mark.parametrize(
    "bad",
    [
        _body(_event(5), {"ResourceName": "Property", "ResourceRecordKey": "K"}),
        _body(_event("5")),
        _body(_event(0)),
        _body(_event(2**63)),
        _body(_event(5), _event(5, "K2")),
        _body(_event(7), _event(6)),
        b"not json",
        json.dumps({"values": []}).encode(),
        _body(_event(5), **{"@odata.nextLink": 7}),
    ],
)
def test_a_page_without_a_sure_order_is_refused_whole(bad: bytes) -> None:
    """Where to go on from would be a guess: the page fails (its request is tried again, and
    the saved sequence does not move)."""
    with pytest.raises(BadPayload):
        parse_event_page(bad)


def test_an_event_with_a_sequence_but_no_readable_key_is_an_error_of_its_own() -> None:
    page = parse_event_page(
        _body(_event(5), _event(6, key=""), _event(7, key=42), _event(8, "x" * 300, "Media"))
    )
    assert [e.sequence for e in page.events] == [5]
    assert [sequence for sequence, _, _ in page.errors] == [6, 7, 8]
    assert all("ResourceRecordKey" in why and "42" not in why for _, _, why in page.errors)
    assert page.last_sequence == 8
    # Whose it may be: a Media event's bad key is not a listing's concern.
    assert [sequence for sequence, _ in page.unreadable("Property")] == [6, 7]
