"""Bad MLS answers through a whole cycle (issue 6.3): hypothesis writes what the MLS says, the
sandbox MLS serves it on loopback as a 200, the real engine syncs, and the database is read
back afterwards.

Whatever the answer (broken or truncated JSON, records of the wrong shape or type, unknown
statuses, strings of thousands of characters, a nextLink that loops, leaves for another host
or is not a link at all), the run finishes and records how it went, and a listing's status
moves only to what a record of that very listing in the answer says, or to off_market when a
readable answer leaves it out; each change has exactly one audit row. A broken nextLink fails
the batch: nothing from its pages is applied.

The default run tries 60 answers; MLS_SYNC_BAD_ANSWERS=1000 tries more.
"""

from __future__ import annotations

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.models import REMOVED_STATUS, Mapped, StatusMapping
from daemon.sandbox.faults import Fault
from daemon.store import listings
from daemon.sync.engine import RunReport
from tests.reliability.conftest import World

EXAMPLES = int(os.environ.get("MLS_SYNC_BAD_ANSWERS", "60"))
KEYS = ["K1", "K2", "K3"]
LOOP = "<a link back to a page already read>"
ELSEWHERE = "http://127.0.0.2:9/Property?$skip=3"
MAPPING = StatusMapping.build()

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_huge = st.integers(1_000, 20_000).map(lambda n: "x" * n)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_statuses = st.sampled_from(
    [
        *("Active", "Pending", "Closed", "Active Under Contract", "Withdrawn", "Coming Soon"),
        *("Canceled", "Expired", "Delete", "Sold?", "", "   "),
    ]
)
_records = st.fixed_dictionaries(
    {"ListingKey": st.sampled_from([*KEYS, "K9"]) | _huge | _json},
    optional={
        "StandardStatus": _statuses | _huge | _json,
        "MlsStatus": _statuses | _json,
        "ModificationTimestamp": st.just("2026-11-24T10:00:00Z") | _text | _json,
    },
)
_values = st.lists(_records | _json, max_size=6) | _json
_links = st.none() | st.just(LOOP) | st.just(ELSEWHERE) | _text | st.integers()


@st.composite
def answers(draw: st.DrawFn) -> str:
    body = {"value": draw(_values)}
    link = draw(_links)
    if link is not None or draw(st.booleans()):
        body["@odata.nextLink"] = link
    text = json.dumps(body)
    form = draw(st.sampled_from(["whole", "whole", "truncated", "not json"]))
    if form == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if form == "not json":
        return draw(_text)
    return text


@settings(max_examples=EXAMPLES, deadline=None)
@given(answer=answers(), initial=st.sampled_from([None, "active", "pending", "sold"]))
def test_no_mls_answer_breaks_a_cycle_or_moves_a_status_it_does_not_justify(
    world: World, answer: str, initial: str | None
) -> None:
    world.portal.call(_one_cycle, world, answer, initial)


async def _one_cycle(world: World, answer: str, initial: str | None) -> None:
    report, prefix = await _sync_answered_by(world, answer, initial)
    run = report.run
    assert run.finished_at is not None and run.outcome in ("ok", "partial", "failed"), run
    allowed, batch_fails = _justified(answer)
    changed = 0
    for key in KEYS:
        row = await listings.get(world.rt.db, f"{prefix}{key}")
        assert row is not None
        if row.status == initial:
            continue
        changed += 1
        assert not batch_fails, (key, row.status, answer[:300])
        assert row.status in allowed[key], (key, initial, row.status, answer[:300])
        history = await listings.history(world.rt.db, row.id)
        assert len(history) == 1 and history[0].to_status == row.status, history
    assert run.status_changes == changed
    if not any(allowed.values()):  # nothing usable in it: the run must say so
        assert run.errors + run.warnings > 0, (run, answer[:300])


def _justified(answer: str) -> tuple[dict[str, set[str]], bool]:
    """What the answer could justify for each key (a superset: the client may refuse more),
    and whether its nextLink must fail the whole batch."""
    allowed: dict[str, set[str]] = {key: set() for key in KEYS}
    try:
        body = json.loads(answer)
    except ValueError:
        return allowed, True
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        return allowed, True
    if body.get("@odata.nextLink") not in (None, ""):
        return allowed, True  # every page is this one: a link here loops, leaves or is junk
    records = body["value"]
    for key in KEYS:
        mine = [r for r in records if isinstance(r, dict) and r.get("ListingKey") == key]
        for record in mine:
            standard, mls_status = record.get("StandardStatus"), record.get("MlsStatus")
            if isinstance(standard, str | None) and isinstance(mls_status, str | None):
                mapped = MAPPING.map(standard, mls_status)
                if isinstance(mapped, Mapped):
                    allowed[key].add(mapped.status.value)
        if not any(key in json.dumps(r) for r in records):
            allowed[key].add(REMOVED_STATUS.value)
    return allowed, False


def test_the_oracle_itself_tells_a_justified_change_from_an_unjustified_one() -> None:
    """The checks above are only as good as `_justified`: pin it on hand-written answers."""
    page = json.dumps({"value": [{"ListingKey": "K1", "StandardStatus": "Closed"}]})
    allowed, fails = _justified(page)
    assert not fails
    assert allowed == {"K1": {"sold"}, "K2": {"off_market"}, "K3": {"off_market"}}
    junk = json.dumps({"value": [{"ListingKey": "K1", "StandardStatus": "Closed"}, "K2 x"]})
    assert _justified(junk)[0]["K2"] == set()  # mentioned in junk: never called removed
    looped = json.dumps({"value": [], "@odata.nextLink": LOOP})
    assert _justified(looped)[1]
    assert _justified(page[:-3])[1]


def test_a_next_link_that_loops_fails_the_batch_with_a_clear_error(world: World) -> None:
    body = json.dumps(
        {"value": [{"ListingKey": "K1", "StandardStatus": "Closed"}], "@odata.nextLink": LOOP}
    )
    report, _ = world.portal.call(_sync_answered_by, world, body, "active")
    messages = [e.message for e in report.errors]
    assert any("points back to a page already read" in m for m in messages), messages
    assert report.run.status_changes == 0


def test_a_next_link_to_another_host_is_refused_and_nothing_is_sent_there(world: World) -> None:
    body = json.dumps({"value": [], "@odata.nextLink": ELSEWHERE})
    report, _ = world.portal.call(_sync_answered_by, world, body, "active")
    messages = [e.message for e in report.errors]
    assert any("refused @odata.nextLink to http://127.0.0.2:9" in m for m in messages), messages
    assert report.run.status_changes == 0


async def _sync_answered_by(
    world: World, answer: str, initial: str | None
) -> tuple[RunReport, str]:
    """Syncs a new connection of three listings (status `initial`) whose MLS answers every
    request of the run (retries, further pages) with `answer`; returns the report and the
    prefix of the listings' ids."""
    cid, prefix = await world.add_connection("c", KEYS, initial, key_filter="in", batch_size=50)
    served = answer.replace(json.dumps(LOOP)[1:-1], f"{world.url}/Property?$skip=0")
    answered = Fault("status", status=200, body=served, times=100)
    return await world.sync_answered_by(cid, answered), prefix
