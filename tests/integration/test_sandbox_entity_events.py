"""The sandbox MLS's EntityEvent resource (RESO's change log, docs/mls-reso.md) over real
HTTP, as a consumer in `events` mode reads it: every change of a listing is an event naming
its key, read `EntityEventSequence gt N` page by page; a compacted log has gaps."""

from __future__ import annotations

from typing import Any

import httpx

from daemon.sandbox.mls_server import FIRST_SEQUENCE
from tests.helpers import STATIC_TOKEN, Mls

AUTH = {"Authorization": f"Bearer {STATIC_TOKEN}"}


async def read_after(url: str, sequence: int, page_size: int) -> list[dict[str, Any]]:
    """Every event after `sequence`, following nextLink as a consumer must."""
    found: list[dict[str, Any]] = []
    params = {
        "$filter": f"EntityEventSequence gt {sequence}",
        "$orderby": "EntityEventSequence",
        "$top": str(page_size),
    }
    async with httpx.AsyncClient(headers=AUTH) as client:
        answer = await client.get(f"{url}/EntityEvent", params=params)
        while True:
            assert answer.status_code == 200, answer.text
            body = answer.json()
            found += body["value"]
            if "@odata.nextLink" not in body:
                return found
            answer = await client.get(body["@odata.nextLink"])


async def test_each_change_of_a_listing_is_an_event_read_after_a_sequence_page_by_page(
    mls: Mls,
) -> None:
    sandbox, url = mls
    for n in range(5):
        sandbox.put(f"K{n}", "Active")
    sandbox.set_status("K2", "Closed")
    sandbox.hide("K3")
    events = await read_after(url, 0, page_size=2)
    assert [e["EntityEventSequence"] for e in events] == list(
        range(FIRST_SEQUENCE, FIRST_SEQUENCE + 7)
    )
    assert [e["ResourceRecordKey"] for e in events] == ["K0", "K1", "K2", "K3", "K4", "K2", "K3"]
    assert {e["ResourceName"] for e in events} == {"Property"}
    later = await read_after(url, events[4]["EntityEventSequence"], page_size=2)
    assert [e["ResourceRecordKey"] for e in later] == ["K2", "K3"]
    assert await read_after(url, events[-1]["EntityEventSequence"], page_size=2) == []


async def test_a_compacted_log_keeps_each_keys_last_event_and_has_gaps(mls: Mls) -> None:
    sandbox, url = mls
    for status in ("Active", "Pending", "Closed"):
        sandbox.put("K1", status)
    sandbox.put("K2", "Active")
    assert sandbox.compact() == 2
    events = await read_after(url, 0, page_size=10)
    assert [(e["ResourceRecordKey"], e["EntityEventSequence"]) for e in events] == [
        ("K1", FIRST_SEQUENCE + 2),
        ("K2", FIRST_SEQUENCE + 3),
    ]
