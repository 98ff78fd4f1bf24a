"""One key the MLS server cannot answer for fails alone (docs/reliability.md "One key the
server fails on"): a by-key query of several keys that the server answers with an error
of its own is asked again in halves, down to the key that fails, so the listings beside it
are checked; and a server that fails every query is not asked much more than before. Against
the sandbox MLS over real HTTP, its faults matching a key in the query."""

from __future__ import annotations

import pytest

from daemon.composition import Runtime, open_runtime
from daemon.config import Settings
from daemon.mls.isolation import MAX_QUERIES
from daemon.sandbox.faults import Fault
from daemon.specs import ListingSpec
from daemon.store import listings, posts, runs
from daemon.sync.engine import RunReport
from daemon.timestamps import iso, utcnow
from tests.helpers import (
    Live,
    Mls,
    add_account,
    add_connection,
    add_post,
    add_sandbox_connection,
    status_of,
    track,
)

pytestmark = pytest.mark.both_databases

KEYS = [f"B{i:02d}" for i in range(20)]
BAD = "B03"
MANY = [f"M{i:03d}" for i in range(200)]
ELEVEN_BAD = {*MANY[5::20], MANY[15]}


async def _many_keys_eleven_bad(runtime: Runtime, mls: Mls) -> tuple[list[str], set[str]]:
    """200 keys in batches of 20; the server fails every query naming one key in each batch,
    two in the first (eleven in all): more than one sync's budget for splitting finds."""
    await add_sandbox_connection(runtime, mls, MANY, batch_size=20)
    for key in ELEVEN_BAD:
        _refuse(mls, key, 400)
    return MANY, ELEVEN_BAD


def _refuse(mls: Mls, key: str, status: int) -> None:
    """Every query naming `key` fails with `status`, however often it is asked."""
    mls[0].faults.add(Fault("status", status=status, times=10_000, matching=f"'{key}'"))


@pytest.mark.parametrize("status", [400, 500])
async def test_a_sale_in_a_batch_with_a_key_the_server_fails_on_is_applied(
    runtime: Runtime, mls: Mls, status: int
) -> None:
    """A 400 (refused) or a 500 (after its retries) for every query naming B03: the other
    19 listings of its batch are checked, B07's sale among them; B03 keeps its status and
    an error that says the server fails a query of it alone."""
    sandbox, _ = mls
    await add_sandbox_connection(runtime, mls, KEYS, batch_size=20)
    await runtime.engine.sync_all()
    sandbox.set_status("B07", "Closed")
    sandbox.set_status(BAD, "Closed")
    _refuse(mls, BAD, status)

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "B07") == "sold"
    assert await status_of(runtime, BAD) == "active"
    assert (report.run.outcome, report.run.errors, report.run.listings_checked) == (
        "partial",
        1,
        19,
    )
    [error] = await runs.errors_of(runtime.db, report.run.id)
    assert error.listing_id == "L-B03" and "alone" in error.message, error.message
    # The batch's tries, then halving 20 keys down to one: two queries a level, five
    # levels at most, each tried once.
    tries = 1 if status == 400 else runtime.settings.mls.max_attempts
    assert report.run.mls_requests <= tries + 2 * 5


async def test_two_keys_the_server_fails_on_fail_alone_in_one_batch(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await add_sandbox_connection(runtime, mls, KEYS, batch_size=20)
    await runtime.engine.sync_all()
    for key in ("B02", "B05", "B16"):
        sandbox.set_status(key, "Closed")
    _refuse(mls, "B02", 400)
    _refuse(mls, "B16", 400)

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "B05") == "sold"
    assert [await status_of(runtime, k) for k in ("B02", "B16")] == ["active", "active"]
    assert (report.run.errors, report.run.listings_checked) == (2, 18)


async def test_a_server_that_refuses_every_query_is_asked_six_more_times_in_a_sync(
    runtime: Runtime, mls: Mls
) -> None:
    """The halves of the first failed batch fail too, six queries with no answer between:
    the cause is not one key, so the splitting stops there and no other batch of the sync
    is split (a server-wide 400 does not multiply the requests). Each batch fails with one
    error, as before."""
    keys = [f"S{i:03d}" for i in range(200)]
    await add_sandbox_connection(runtime, mls, keys, batch_size=50)
    mls[0].faults.add(Fault("status", status=400, times=10_000))

    # Sync after sync: the last key of the halves that failed is no key that fails alone
    # (a review found each sync remembering one more of them, asked alone at every sync).
    for _ in range(3):
        report = await runtime.engine.sync_all()

        assert report.run.mls_requests == 4 + 6
        assert (report.run.errors, report.run.listings_checked) == (4, 0)
    assert {await status_of(runtime, k) for k in keys} == {None}


async def test_an_overloaded_server_is_not_asked_again_in_halves(
    runtime: Runtime, mls: Mls
) -> None:
    """A 503 says the server is busy, whatever was asked: the batch fails after its retries,
    as it always did."""
    await add_sandbox_connection(runtime, mls, KEYS, batch_size=20)
    attempts = runtime.settings.mls.max_attempts
    _refuse(mls, BAD, 503)

    report = await runtime.engine.sync_all()

    assert report.run.mls_requests == attempts
    assert (report.run.errors, report.run.listings_checked) == (1, 0)


async def test_a_sale_named_by_the_change_log_beside_a_key_the_server_fails_on_is_applied(
    runtime: Runtime, mls: Mls
) -> None:
    """Events mode reads the listings a page of the log names in one batch: the sale beside
    the bad key is applied, and B03 waits for a read of its own, made at each sync."""
    sandbox, _ = mls
    await add_sandbox_connection(runtime, mls, KEYS, mode="events")
    await runtime.engine.sync_all()  # the full pass
    sandbox.set_status(BAD, "Closed")
    sandbox.set_status("B07", "Closed")
    _refuse(mls, BAD, 400)

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "B07") == "sold"
    assert report.run.errors == 1
    sandbox.faults.clear()
    await runtime.engine.sync_all()
    assert await status_of(runtime, BAD) == "sold"


async def test_a_sold_listing_beside_a_key_the_server_refuses_loses_its_facebook_post(
    live: Live,
) -> None:
    live.mls.put("B07", "Active")
    live.mls.put(BAD, "Active")
    await add_connection(live.rt, live.mls_url)
    await track(live.rt, "mls-1", [BAD, "B07"])
    await add_account(live.rt, "fb-page", "facebook", "fb-token")
    live.platforms.publish("facebook", "1093_447", "fb-token")
    await add_post(live.rt, "facebook-B07", "L-B07", "fb-page", "1093_447")
    await live.rt.engine.sync_all()
    live.mls.set_status("B07", "Closed")
    live.mls.faults.add(Fault("status", status=400, times=10_000, matching=f"'{BAD}'"))

    await live.rt.engine.sync_all()

    row = await posts.get(live.rt.db, "facebook-B07")
    assert row is not None and row.status == "unpublished"
    assert not live.platforms.exists("1093_447")


async def test_many_keys_the_server_fails_on_cost_a_bounded_number_of_queries(
    runtime: Runtime, mls: Mls
) -> None:
    """One bad key in each of ten batches of 20, two in the first: the first few are found,
    within the sync's budget for splitting. It runs out in the middle of a batch, whose
    halves not split any more fail with an error that says so; the batches after it fail
    whole, each with one error, as before."""
    _, bad = await _many_keys_eleven_bad(runtime, mls)

    report = await runtime.engine.sync_all()

    assert report.run.mls_requests <= 10 + MAX_QUERIES
    errors = await runs.errors_of(runtime.db, report.run.id)
    alone = {e.listing_id for e in errors if "alone" in e.message}
    unsplit = [e for e in errors if e.scope == "listing" and "asks no more" in e.message]
    whole = [e for e in errors if e.scope == "batch"]
    assert len(alone) >= 2 and alone <= {f"L-{k}" for k in bad}
    assert unsplit and len(alone) + len(unsplit) + len(whole) == report.run.errors
    assert report.run.listings_checked + len(alone) + len(unsplit) + 20 * len(whole) == 200


async def test_an_answer_nested_too_deep_to_read_fails_only_the_key_it_comes_for(
    runtime: Runtime, mls: Mls
) -> None:
    """Every answer to a query naming B03 holds a value nested 5,000 arrays deep, past what
    a JSON parser reads: the sale beside B03 is applied, and the cycle goes on."""
    sandbox, _ = mls
    await add_sandbox_connection(runtime, mls, KEYS, batch_size=20)
    await runtime.engine.sync_all()
    sandbox.set_status("B07", "Closed")
    deep = "[" * 5000 + "]" * 5000
    body = (
        f'{{"value": [{{"ListingKey": "B03", "StandardStatus": "Active", "MlsStatus": {deep}}}]}}'
    )
    sandbox.faults.add(Fault("status", status=200, body=body, times=10_000, matching=f"'{BAD}'"))

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "B07") == "sold"
    assert (report.run.errors, report.run.listings_checked) == (1, 19)


async def test_a_busy_half_does_not_lose_what_the_other_half_answered(
    runtime: Runtime, mls: Mls
) -> None:
    """While B03's batch is split, every query naming B15 gets a 503 (the server busy): B15's
    half is not checked and not split further, and B07's sale in the other half is
    applied."""
    sandbox, _ = mls
    await add_sandbox_connection(runtime, mls, KEYS, batch_size=20)
    await runtime.engine.sync_all()
    sandbox.set_status("B07", "Closed")
    _refuse(mls, BAD, 400)
    _refuse(mls, "B15", 503)

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "B07") == "sold"
    errors = await runs.errors_of(runtime.db, report.run.id)
    busy = {e.listing_id for e in errors if "503" in e.message}
    assert busy == {f"L-{k}" for k in KEYS[10:]}
    assert report.run.listings_checked == 9


async def _until_all_found(runtime: Runtime, keys: list[str], bad: set[str]) -> RunReport:
    """Syncs until every key but `bad` is checked (8 syncs at most); the last sync's report."""
    for _ in range(8):
        report = await runtime.engine.sync_all()
        if report.run.listings_checked == len(keys) - len(bad):
            break
    return report


async def test_keys_the_server_fails_on_are_asked_alone_at_the_next_syncs_so_all_are_found(
    runtime: Runtime, mls: Mls
) -> None:
    """The same eleven bad keys, sync after sync: each key found failing alone is asked alone
    from then on, for no share of the splitting's budget, so the next syncs find the others.
    Before, each sync found the same first few and the batches after them failed whole, for
    good: M199's sale was never applied."""
    sandbox, _ = mls
    keys, bad = await _many_keys_eleven_bad(runtime, mls)
    sandbox.set_status("M199", "Closed")

    report = await _until_all_found(runtime, keys, bad)

    assert await status_of(runtime, "M199") == "sold"
    errors = await runs.errors_of(runtime.db, report.run.id)
    assert {e.listing_id for e in errors if "alone" in e.message} == {f"L-{k}" for k in bad}
    assert report.run.errors == len(bad)
    steady = await runtime.engine.sync_all()
    # Each bad key alone, and the other 189 listings in batches of 20.
    assert (steady.run.mls_requests, steady.run.listings_checked) == (len(bad) + 10, 189)


async def test_a_key_the_server_fails_on_alone_in_the_last_batch_of_a_page_does_not_hold_the_log(
    runtime: Runtime, mls: Mls
) -> None:
    """A page of the change log names 21 changed listings, read in batches of 20: the last
    batch is B20 alone, whose query the server fails. Its listing gets the error and the
    page is written, so B07's sale is applied and the log goes on. Before, a batch of one
    key that failed was a batch that failed: the same page, in the same batches, was read
    again at every sync, and B07's sale waited for the day's full pass."""
    sandbox, _ = mls
    keys = [*KEYS, "B20"]
    await add_sandbox_connection(runtime, mls, keys, mode="events", batch_size=20)
    await runtime.engine.sync_all()  # the full pass
    _refuse(mls, "B20", 400)
    for key in keys:
        sandbox.set_status(key, "Closed" if key == "B07" else "Pending")

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "B07") == "sold"
    assert await status_of(runtime, "B20") == "active"
    # The page, then its two batches, B20 alone the second: no split found it.
    assert report.run.mls_requests == 3
    [error] = await runs.errors_of(runtime.db, report.run.id)
    assert error.listing_id == "L-B20" and "alone" in error.message, error.message
    sandbox.faults.clear()
    await runtime.engine.sync_all()  # read by key, as a listing with an error is
    assert await status_of(runtime, "B20") == "pending"


async def test_a_full_page_of_the_log_naming_one_tracked_key_the_server_fails_on_does_not_hold_it(
    runtime: Runtime, mls: Mls
) -> None:
    """Pages of three events: the first names two listings nobody tracks and B03, whose
    query the server fails. The server answers a query of another tracked key (B00), so
    B03 fails alone, its listing gets the error, and the log goes on: B07's sale, in the
    next page, is applied. Before, the page was read again at every sync, the same page
    with the same one query, and B07's sale waited for the day's full pass."""
    sandbox, _ = mls
    await add_sandbox_connection(runtime, mls, KEYS, mode="events", page_size=3)
    await runtime.engine.sync_all()  # the full pass
    _refuse(mls, BAD, 400)
    sandbox.put("U1", "Active")  # changes of listings this connection does not track
    sandbox.put("U2", "Active")
    sandbox.set_status(BAD, "Closed")
    sandbox.set_status("B07", "Closed")

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "B07") == "sold"
    assert await status_of(runtime, BAD) == "active"
    [error] = await runs.errors_of(runtime.db, report.run.id)
    assert error.listing_id == "L-B03" and "alone" in error.message, error.message


async def test_events_mode_finds_more_keys_the_server_fails_on_than_one_sync_can_and_moves_on(
    runtime: Runtime, mls: Mls
) -> None:
    """A page of the change log names 200 changed listings, eleven of them keys the server
    fails on, more than one sync's splitting can find: the page is written whole or not at
    all, so until every key is found each sync fails it. Each key found is asked alone at
    the next sync, so the syncs find them all and M199's sale is applied. The first version
    of the stored marks kept only what a write recorded: each sync found the same first
    keys again and the log never moved on."""
    sandbox, _ = mls
    keys, bad = MANY, ELEVEN_BAD
    await add_sandbox_connection(runtime, mls, keys, mode="events", batch_size=20)
    await runtime.engine.sync_all()  # the full pass, before the server fails on any key
    for key in keys:
        sandbox.set_status(key, "Pending")
    sandbox.set_status("M199", "Closed")
    for key in bad:
        _refuse(mls, key, 400)

    for _ in range(8):
        await runtime.engine.sync_all()
        if await status_of(runtime, "M199") == "sold":
            break

    assert await status_of(runtime, "M199") == "sold"
    assert await status_of(runtime, "M100") == "pending"


async def test_a_restarted_daemon_asks_the_keys_found_failing_alone_alone_from_its_first_sync(
    runtime: Runtime, mls: Mls, settings: Settings, secret_key: str
) -> None:
    """The eleven bad keys, found by one daemon's syncs; then another daemon's runtime on
    the same database (as after a restart, or another VM's daemon taking the connection
    over) syncs: it asks each bad key alone from its first sync, and M199's sale, in the
    last batch, is applied at once. Before, the keys lived in the first daemon's memory: the
    second's first sync split batches down to the same first few keys again, the batches
    after them failed whole, and M199 stayed `active`."""
    sandbox, _ = mls
    keys, bad = await _many_keys_eleven_bad(runtime, mls)
    found = await _until_all_found(runtime, keys, bad)
    assert found.run.listings_checked == len(keys) - len(bad)
    sandbox.set_status("M199", "Closed")

    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as restarted:
        report = await restarted.engine.sync_all()

    assert await status_of(runtime, "M199") == "sold"
    # Each bad key alone, and the other 189 listings in batches of 20.
    assert (report.run.mls_requests, report.run.listings_checked) == (len(bad) + 10, 189)
    assert report.run.errors == len(bad)


async def _asked_alone(runtime: Runtime, mls: Mls) -> None:
    """KEYS in one batch of 20, the server failing every query naming B03: the first sync
    finds it, and the next asks it alone."""
    await add_sandbox_connection(runtime, mls, KEYS, batch_size=20)
    _refuse(mls, BAD, 400)
    await runtime.engine.sync_all()
    alone = await runtime.engine.sync_all()
    assert alone.run.mls_requests == 2  # B03 alone, then the other 19


async def test_a_listing_moved_to_another_key_is_asked_in_batches_again(
    runtime: Runtime, mls: Mls
) -> None:
    """B03 fails alone, so it is asked alone; its listing is then re-pointed to the record
    B20, which the server answers: the old key's failing says nothing of the new one, which
    is asked in the batch with the others."""
    sandbox, _ = mls
    await _asked_alone(runtime, mls)
    sandbox.put("B20", "Closed")
    spec = ListingSpec(id="L-B03", connection_id="mls-1", listing_key="B20")
    await listings.add_many(runtime.db, [spec], iso(utcnow()))

    moved = await runtime.engine.sync_all()

    assert await status_of(runtime, "B03") == "sold"
    assert (moved.run.outcome, moved.run.mls_requests) == ("ok", 1)


async def test_a_key_asked_alone_that_the_server_answers_again_goes_back_into_batches(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    await _asked_alone(runtime, mls)
    sandbox.faults.clear()
    sandbox.set_status(BAD, "Closed")

    answered = await runtime.engine.sync_all()
    again = await runtime.engine.sync_all()

    assert await status_of(runtime, BAD) == "sold"
    assert (answered.run.outcome, answered.run.mls_requests) == ("ok", 2)
    assert (again.run.outcome, again.run.mls_requests) == ("ok", 1)


async def test_a_key_asked_alone_answered_with_a_record_that_cannot_be_read_goes_back_into_batches(
    runtime: Runtime, mls: Mls
) -> None:
    """The server answers B03's query of its own again, but with a record that cannot be
    read: B03 keeps its error, and no longer fails alone, so the next sync asks it in the
    batch (its record still unreadable, read again at each sync by its error). The first
    version of the stored mark kept it, and B03 was asked alone at every sync."""
    sandbox, _ = mls
    await _asked_alone(runtime, mls)
    sandbox.faults.clear()
    body = '{"value": [{"ListingKey": "B03", "StandardStatus": 7}]}'
    sandbox.faults.add(Fault("status", status=200, body=body, times=1, matching=f"'{BAD}'"))

    unreadable = await runtime.engine.sync_all()
    batched = await runtime.engine.sync_all()

    [error] = await runs.errors_of(runtime.db, unreadable.run.id)
    assert error.listing_id == "L-B03" and "malformed" in error.message, error.message
    assert (unreadable.run.mls_requests, batched.run.mls_requests) == (2, 1)
