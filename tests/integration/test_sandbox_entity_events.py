"""The sandbox MLS's EntityEvent resource (RESO's change log, docs/mls-reso.md) over real
HTTP, as a consumer in `events` mode reads it: every change of a listing is an event naming
its key, read `EntityEventSequence gt N` page by page; a compacted log has gaps."""

from __future__ import annotations

from typing import Any

import httpx

from daemon.composition import Runtime
from daemon.sandbox.mls_server import FIRST_SEQUENCE, TOP_IS_TOTAL_PATH
from daemon.store import connections
from tests.helpers import STATIC_TOKEN, Mls, add_connection

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


async def _client_events(runtime: Runtime, url: str, after: int, **fields: Any) -> list[Any]:
    """What the daemon's MLS client reads of the change log after `after`, page by page,
    for connection mls-1 (added with `fields`)."""
    await add_connection(runtime, url, **fields)
    return await _client_events_again(runtime, after)


async def test_the_mls_client_reads_the_change_log_in_pages_and_across_gaps(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, url = mls
    for n in range(7):
        sandbox.put(f"K{n}", "Active")
    sandbox.put("K1", "Closed")
    sandbox.compact()  # K1's first event is gone: a gap
    pages = await _client_events(runtime, url, 0, page_size=3)
    events = [e for p in pages for e in p.events]
    assert [e.key for e in events] == ["K0", "K2", "K3", "K4", "K5", "K6", "K1"]
    assert FIRST_SEQUENCE + 1 not in [e.sequence for e in events]
    assert [p.size for p in pages] == [3, 3, 1]
    after = events[3].sequence
    rest = await _client_events_again(runtime, after)
    assert [e.key for p in rest for e in p.events] == ["K5", "K6", "K1"]


async def _client_events_again(runtime: Runtime, after: int) -> list[Any]:
    """The same, for connection mls-1 as it is."""
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None
    client = runtime.engine.access.client_for(row, lambda: None)
    return [page async for page in client.entity_events(after)]


async def test_a_server_that_reads_top_as_a_total_is_read_on_after_the_last_sequence(
    runtime: Runtime, mls: Mls
) -> None:
    """Such a server (docs/mls-paging.md) ends its answer after exactly $top events without
    a nextLink: the client asks again after the last sequence, until an answer is short."""
    sandbox, url = mls
    for n in range(5):
        sandbox.put(f"K{n}", "Active")
    pages = await _client_events(runtime, f"{url}/{TOP_IS_TOTAL_PATH}", 0, page_size=2)
    assert [e.key for p in pages for e in p.events] == [f"K{n}" for n in range(5)]
    assert all(p.next_link is None for p in pages)


async def test_a_total_of_top_events_in_pages_smaller_than_asked_is_read_on_after(
    runtime: Runtime, mls: Mls
) -> None:
    """`$top` of 250 caps the answer, paged at 200 (the server's largest) with a nextLink:
    the client reads on after the first page's last sequence (not by the nextLink), and the
    second answer, 100 events with no nextLink, is the last."""
    sandbox, url = mls
    for n in range(300):
        sandbox.put(f"K{n:03d}", "Active")
    pages = await _client_events(runtime, f"{url}/{TOP_IS_TOTAL_PATH}", 0, page_size=250)
    assert [e.key for p in pages for e in p.events] == [f"K{n:03d}" for n in range(300)]
    assert [p.size for p in pages] == [200, 100]


async def test_an_event_whose_key_cannot_be_read_is_kept_as_an_error_of_its_page(
    runtime: Runtime, mls: Mls
) -> None:
    """It may name a tracked listing: the run that meets it must record it, not say ok."""
    sandbox, url = mls
    sandbox.put("K0", "Active")
    sandbox.entity_events.append(
        {"EntityEventSequence": sandbox.next_sequence, "ResourceName": "Property"}
    )
    pages = await _client_events(runtime, url, 0)
    assert [e.key for e in pages[0].events] == ["K0"]
    assert [sequence for sequence, _ in pages[0].unreadable("Property")] == [FIRST_SEQUENCE + 1]
    assert "ResourceRecordKey" in pages[0].errors[0][2]
