"""A run says `ok` only when nothing was missed (issue 12, items 1-4 and 14-15): incremental
paging against servers that read `$top` as a total, full passes with failed batches, records
dated in the future or out of range, and servers that cannot be reached."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode

import anyio
import anyio.abc
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.composition import Runtime, open_runtime
from daemon.sandbox.faults import Fault
from daemon.sandbox.mls_server import TOP_IS_TOTAL_PATH, SandboxMls, build_mls_app
from daemon.serving import serving
from daemon.specs import ListingSpec
from daemon.store import connections, leases, listings
from daemon.timestamps import iso, parse_iso, utcnow
from tests.helpers import (
    Mls,
    add_connection,
    add_incremental,
    add_oauth_connection,
    closed_port_url,
    make_settings,
    sandbox_mls,
    status_of,
    track,
)

pytestmark = pytest.mark.both_databases

KEYS = [f"N{i:02d}" for i in range(30)]


async def test_incremental_reads_every_change_from_a_server_whose_top_is_the_total(
    runtime: Runtime, mls: Mls
) -> None:
    """Bridge-style paging: `$top` caps the whole answer and no nextLink says there is more.
    Twelve changes (five of them sharing one timestamp) with pages of five are all applied,
    and the cursor reaches the last of them."""
    sandbox, url = mls
    for key in KEYS:
        sandbox.put(key, "Active")
    await add_incremental(runtime, f"{url}/{TOP_IS_TOTAL_PATH}", KEYS, page_size=5)
    await runtime.engine.sync_all()
    changed = KEYS[3:15]
    same = sandbox.stamp()
    for key in changed[:5]:
        sandbox.put(key, "Closed", modified=same)
    for key in changed[5:]:
        sandbox.set_status(key, "Closed")

    report = await runtime.engine.sync_all()

    assert (report.run.outcome, report.run.errors) == ("ok", 0)
    assert [await status_of(runtime, k) for k in changed] == ["sold"] * len(changed)
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.cursor is not None
    assert parse_iso(row.cursor) == sandbox.records[changed[-1]]["ModificationTimestamp"]


async def test_the_page_size_is_asked_with_the_odata_preference(runtime: Runtime, mls: Mls) -> None:
    """A server that pages by `Prefer: odata.maxpagesize` (10 records when it is not sent)
    answers in pages of the connection's size, not in pages of ten."""
    sandbox, url = mls
    for key in KEYS:
        sandbox.put(key, "Pending")
    await add_connection(runtime, f"{url}/{TOP_IS_TOTAL_PATH}", batch_size=30, page_size=30)
    await track(runtime, "mls-1", KEYS)

    report = await runtime.engine.sync_all()

    assert (report.run.outcome, report.run.mls_requests) == ("ok", 1)
    assert {await status_of(runtime, k) for k in KEYS} == {"pending"}


async def test_a_failed_batch_in_the_full_pass_is_asked_again_next_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """Incremental mode's full pass loses one batch to a server error. The pass is not done:
    the next cycle asks those listings again, though their changes are older than any cursor."""
    sandbox, url = mls
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    for key in KEYS[:10]:
        sandbox.put(key, "Closed", modified=long_ago)
    await add_incremental(runtime, url, KEYS[:10], batch_size=5)
    attempts = runtime.settings.mls.max_attempts
    # A 503 (the server busy) fails the batch whole: a 500 would be split to find its key.
    sandbox.faults.add(Fault("status", status=503, times=attempts, matching="'N00'"))

    first = await runtime.engine.sync_all()

    assert (first.run.outcome, first.run.errors) == ("partial", 1)
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.last_full_reconcile_at is None

    second = await runtime.engine.sync_all()

    assert (second.run.outcome, second.run.errors) == ("ok", 0)
    assert {await status_of(runtime, k) for k in KEYS[:10]} == {"sold"}


async def test_a_future_dated_record_does_not_carry_the_cursor_into_the_future(
    runtime: Runtime, mls: Mls
) -> None:
    """One record dated next year: its status is applied, a warning names its key, and the
    changes that follow it are still found."""
    sandbox, url = mls
    for key in KEYS[:5]:
        sandbox.put(key, "Active")
    await add_incremental(runtime, url, KEYS[:5])
    await runtime.engine.sync_all()
    sandbox.put("N00", "Pending", modified=datetime.now(UTC) + timedelta(days=365))

    flagged = await runtime.engine.sync_all()

    assert await status_of(runtime, "N00") == "pending"
    assert flagged.run.warnings == 1 and flagged.run.errors == 0
    assert "'N00'" in flagged.errors[0].message and "future" in flagged.errors[0].message
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.cursor is not None
    assert parse_iso(row.cursor) < datetime.now(UTC) + timedelta(minutes=5)

    sandbox.set_status("N03", "Closed")
    await runtime.engine.sync_all()

    assert await status_of(runtime, "N03") == "sold"


async def test_a_full_pass_pulls_back_a_cursor_left_in_the_future(
    runtime: Runtime, mls: Mls
) -> None:
    """A cursor that an older version pushed a year ahead is set back by the next full pass,
    and later changes are found again."""
    sandbox, url = mls
    for key in KEYS[:5]:
        sandbox.put(key, "Active")
    await add_incremental(runtime, url, KEYS[:5], full_reconcile_seconds=60)
    await runtime.engine.sync_all()
    async with runtime.db.transaction() as conn:
        await connections.save_cursor(conn, "mls-1", "2099-01-01T00:00:00.000000Z", "2026-01-01")
    later = datetime.now(UTC) + timedelta(minutes=2)
    runtime.engine.clock = lambda: later
    await runtime.engine.sync_all()  # the full pass is due

    sandbox.put("N02", "Closed", modified=later + timedelta(seconds=1))
    await runtime.engine.sync_all()

    assert await status_of(runtime, "N02") == "sold"


async def test_a_timestamp_out_of_range_in_utc_fails_only_its_listing(
    runtime: Runtime, mls: Mls
) -> None:
    """`9999-12-31T23:00:00-05:00` is past the last moment Python can hold in UTC: that listing
    gets an error, the others of its batch and connection sync."""
    sandbox, url = mls
    for key in KEYS[:4]:
        sandbox.put(key, "Closed")
    sandbox.records["N01"]["ModificationTimestamp"] = "9999-12-31T23:00:00-05:00"
    sandbox.records["N02"]["ModificationTimestamp"] = "0001-01-01T00:30:00+01:00"
    await add_connection(runtime, url)
    await track(runtime, "mls-1", KEYS[:4])

    report = await runtime.engine.sync_all()

    assert report.run.errors == 2
    assert {e.listing_id for e in report.errors} == {"L-N01", "L-N02"}
    statuses = [await status_of(runtime, k) for k in KEYS[:4]]
    assert statuses == ["sold", None, None, "sold"]


async def test_an_unreachable_server_costs_one_error_not_one_per_batch(
    runtime: Runtime, mls: Mls
) -> None:
    """Nothing listens at the connection's address: after one batch's worth of attempts the
    rest of its 20 batches are skipped, with one error that says the connection was refused;
    another connection of the same run carries on."""
    sandbox, url = mls
    sandbox.put("OK1", "Closed")
    dead = closed_port_url()
    await add_connection(runtime, dead, batch_size=5)
    await track(runtime, "mls-1", [f"D{i:03d}" for i in range(100)])
    await add_connection(runtime, url, connection_id="mls-2")
    await track(runtime, "mls-2", ["OK1"], prefix="L2-")

    report = await runtime.engine.sync_all()

    [error] = report.errors
    assert error.connection_id == "mls-1" and "connection refused" in error.message
    assert report.run.mls_requests <= runtime.settings.mls.max_attempts + 4  # 4 in flight
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.last_error is not None and "refused" in row.last_error


async def test_last_error_tells_of_a_failed_batch_and_a_clean_cycle_clears_it(
    runtime: Runtime, mls: Mls
) -> None:
    """`connections list` shows why the last cycle of a connection was not clean."""
    sandbox, url = mls
    for key in KEYS[:10]:
        sandbox.put(key, "Active")
    await add_connection(runtime, url, batch_size=5)
    await track(runtime, "mls-1", KEYS[:10])
    attempts = runtime.settings.mls.max_attempts
    sandbox.faults.add(Fault("status", status=503, times=attempts, matching="'N05'"))

    await runtime.engine.sync_all()

    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.last_error is not None
    assert "not checked" in row.last_error and "HTTP 503" in row.last_error

    await runtime.engine.sync_all()

    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.last_error is None


async def test_a_server_that_never_answers_is_skipped_after_one_batch_of_timeouts(
    tmp_path: Path, secret_key: str
) -> None:
    """A host that accepts connections and then says nothing: after one batch's worth of
    timeouts the connection's other 19 batches are not tried, and the error says it timed out."""
    accepted = 0

    async def silent(stream: anyio.abc.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        async with stream:
            await anyio.sleep(30)

    settings = make_settings(tmp_path, MLS_SYNC_MLS__TIMEOUT_SECONDS="0.3")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (not Django)
    async with (
        open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt,
        listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.serve, silent)
        await add_connection(rt, f"http://127.0.0.1:{port}", batch_size=5)
        await track(rt, "mls-1", [f"T{i:03d}" for i in range(100)])

        report = await rt.engine.sync_all()
        tg.cancel_scope.cancel()

    [error] = report.errors
    assert "timed out" in error.message and error.scope == "connection"
    assert accepted <= settings.mls.max_attempts + 4  # the batches already in flight


async def test_a_token_endpoint_error_page_is_named_by_its_status_and_never_pasted(
    runtime: Runtime,
) -> None:
    """A token URL with a typo, behind a web server that answers 404 with an HTML page: the
    run's error says HTTP 404 and carries none of the page."""
    page = "<html><body><h1>404 Not Found</h1>nginx</body></html>"

    async def not_found(request: Request) -> Response:
        return HTMLResponse(page, status_code=404)

    app = Starlette(routes=[Route("/oauth/token", not_found, methods=["POST"])])
    async with serving(app) as proxy:
        await add_oauth_connection(runtime, proxy)
        await track(runtime, "mls-1", ["A"])

        report = await runtime.engine.sync_all()

    [error] = report.errors
    assert "HTTP 404" in error.message
    assert "<html" not in error.message and "nginx" not in error.message


async def test_a_continuation_that_cannot_move_forward_is_a_recorded_error(
    runtime: Runtime, mls: Mls
) -> None:
    """A server that answers the keyset continuation with the same full page again: the run
    says the changes after it cannot be read, instead of `ok`."""
    sandbox, url = mls
    await add_incremental(runtime, url, KEYS[:5], page_size=5)
    start = "2026-11-01T00:00:00.000000Z"
    for key in KEYS[:5]:  # a full page of changes, in order, all at the cursor's time
        sandbox.put(key, "Closed", modified=parse_iso(start))
    async with runtime.db.transaction() as conn:
        await connections.save_cursor(conn, "mls-1", start, start)
    await connections.mark_reconciled(runtime.db, "mls-1", iso(datetime.now(UTC)))
    page = [
        {"ListingKey": k, "StandardStatus": "Closed", "ModificationTimestamp": start}
        for k in KEYS[:5]
    ]
    body = json.dumps({"value": page})
    continuation = "ModificationTimestamp gt"  # the query after the first full page
    sandbox.faults.add(Fault("status", status=200, body=body, times=100, matching=continuation))

    report = await runtime.engine.sync_all()

    assert report.run.outcome != "ok"
    [error] = report.errors
    assert "give no later (ModificationTimestamp, ListingKey)" in error.message


async def test_a_connection_that_cannot_be_prepared_fails_every_cycle_and_frees_its_lease(
    runtime: Runtime, mls: Mls
) -> None:
    """Its secret no longer decrypts: each cycle records the error and sets `last_error`, and
    the next cycle tries again instead of skipping it as "already being synced"."""
    sandbox, url = mls
    sandbox.put("A", "Closed")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["A"])
    async with runtime.db.transaction() as conn:
        await connections.set_secret(conn, "mls-1", "not-a-token-this-key-can-open")

    first = await runtime.engine.sync_all()
    second = await runtime.engine.sync_all()

    for report in (first, second):
        assert report.run.outcome == "failed"
        [error] = report.errors
        assert error.severity == "error" and "cannot prepare" in error.message
    assert await leases.holder_of(runtime.db, "mls-1") is None
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.last_error is not None and "cannot prepare" in row.last_error


async def test_a_listing_tracked_after_the_full_pass_is_read_by_the_next_incremental_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """A listing added to an incremental connection, or moved to another key, after its full
    pass: its record has not changed since the cursor, so no read of the changes returns it.
    The next cycle reads it by key, not the next full pass a day later."""
    sandbox, url = mls
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    sandbox.put("N00", "Active")
    for key in ("N01", "N02"):
        sandbox.put(key, "Closed", modified=long_ago)
    await add_incremental(runtime, url, ["N00"])
    await runtime.engine.sync_all()  # the full pass: the cursor is set
    await track(runtime, "mls-1", ["N02"], status="active")  # added, said to be active
    await listings.add_many(  # L-N00 now stands for N01
        runtime.db,
        [ListingSpec(id="L-N00", connection_id="mls-1", listing_key="N01")],
        iso(utcnow()),
    )

    report = await runtime.engine.sync_all()

    assert (report.run.outcome, report.run.listings_checked) == ("ok", 2)
    assert [await status_of(runtime, k) for k in ("N00", "N02")] == ["sold", "sold"]


async def test_a_listing_whose_check_failed_is_read_again_by_the_next_incremental_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """The full pass could not read one record: that run says so, and the cycles after it
    read that listing by key until it reads, instead of saying `ok` without it."""
    sandbox, url = mls
    for key in KEYS[:3]:
        sandbox.put(key, "Active")
    sandbox.put("N03", "Closed", ModificationTimestamp="yesterday")  # unreadable
    await add_incremental(runtime, url, KEYS[:4])

    first = await runtime.engine.sync_all()
    second = await runtime.engine.sync_all()

    assert (first.run.outcome, second.run.outcome) == ("partial", "partial")
    sandbox.put("N03", "Closed", modified=datetime(2001, 1, 1, tzinfo=UTC))  # mended, long ago
    third = await runtime.engine.sync_all()
    assert (third.run.outcome, await status_of(runtime, "N03")) == ("ok", "sold")


@pytest.mark.parametrize("unreadable", [7, "7\x00"], ids=["a number", "with a NUL"])
async def test_a_changed_record_whose_key_cannot_be_read_has_every_listing_read_in_its_place(
    runtime: Runtime, mls: Mls, unreadable: object
) -> None:
    """An incremental answer holds a record whose ListingKey is a number, or text with a NUL
    in it (which PostgreSQL refuses in a query): it could be any tracked listing's change, so
    every tracked listing is read by key, as in events mode. The page's own records are older
    than that read, and do not undo it."""
    sandbox, url = mls
    for key in ("7", "8"):
        sandbox.put(key, "Active")
    await add_incremental(runtime, url, ["7", "8"])
    await runtime.engine.sync_all()
    stale = {"ListingKey": "8", "StandardStatus": "Pending", "ModificationTimestamp": iso(utcnow())}
    sandbox.set_status("7", "Closed")
    sandbox.set_status("8", "Closed")  # after the record of 8 in the answer below
    record = {
        "ListingKey": unreadable,
        "StandardStatus": "Closed",
        "ModificationTimestamp": iso(utcnow()),
    }
    changes = json.dumps({"value": [stale, record]})
    sandbox.faults.add(Fault("status", status=200, body=changes, matching="ModificationTimestamp"))

    report = await runtime.engine.sync_all()

    assert [await status_of(runtime, k) for k in ("7", "8")] == ["sold", "sold"]
    assert (report.run.outcome, report.run.errors, report.run.warnings) == ("ok", 0, 1)
    [warning] = report.errors
    assert "every tracked listing was read" in warning.message


async def test_a_by_key_answer_under_another_key_removes_nothing(
    runtime: Runtime, mls: Mls
) -> None:
    """A server that matches keys without regard to case answers `abc1` with the record of
    `ABC1`: the listing is not confirmed (an error naming both keys), not removed."""
    sandbox, url = mls
    sandbox.put("abc1", "Active")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["abc1"])
    await runtime.engine.sync_all()
    record = {
        "ListingKey": "ABC1",
        "StandardStatus": "Active",
        "ModificationTimestamp": iso(utcnow()),
    }
    sandbox.faults.add(
        Fault("status", status=200, body=json.dumps({"value": [record]}), matching="'abc1'")
    )

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "abc1") == "active"
    assert (report.run.outcome, report.changes) == ("partial", {})
    [error] = report.errors
    assert "'ABC1'" in error.message and "not asked for" in error.message


@asynccontextmanager
async def _synced_once(
    runtime: Runtime,
    server: Callable[[ASGIApp], ASGIApp],
    tracked: int,
    page_size: int,
    path: str = TOP_IS_TOTAL_PATH,
) -> AsyncIterator[SandboxMls]:
    """An incremental connection tracking the first `tracked` KEYS, all Active, on the
    sandbox MLS served as `server` makes it (under `path`), after its first cycle."""
    sandbox = sandbox_mls()
    async with serving(server(build_mls_app(sandbox))) as url:
        for key in KEYS[:tracked]:
            sandbox.put(key, "Active")
        base = f"{url}/{path}" if path else url
        await add_incremental(runtime, base, KEYS[:tracked], page_size=page_size)
        await runtime.engine.sync_all()
        yield sandbox


def _without_orderby(app: ASGIApp, but_for_one: bool = False) -> ASGIApp:
    """The sandbox MLS as a server that ignores `$orderby`: it answers in key order
    (`but_for_one`: except in answers of one record, as if it sorted only those)."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
            one = ("$top", "1") in query
            kept = urlencode([(k, v) for k, v in query if k != "$orderby" or (one and but_for_one)])
            scope = {**scope, "query_string": kept.encode()}
        await app(scope, receive, send)

    return serve


async def test_a_server_that_ignores_the_order_asked_for_is_a_recorded_error(
    runtime: Runtime,
) -> None:
    """A server that reads `$top` as the total and ignores `$orderby`: the newest changes
    come first and the continuation after them finds nothing, so older ones would be lost.
    The run says the changes cannot be read in order, every cycle, instead of `ok`."""
    async with _synced_once(runtime, _without_orderby, 15, 5) as sandbox:
        for key in reversed(KEYS[3:15]):  # the newest change has the lowest key
            sandbox.set_status(key, "Closed")

        reports = [await runtime.engine.sync_all() for _ in range(2)]

    for report in reports:
        assert report.run.outcome != "ok"
        assert any("the order asked for" in e.message for e in report.errors)


def _with_top_of_its_own(app: ASGIApp, top: int) -> ASGIApp:
    """A server that ignores the `$top` and page size asked for, and stops every answer at
    `top` records of its own, with no nextLink."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = parse_qsl(scope["query_string"].decode(), keep_blank_values=True)
            kept = urlencode([(k, str(top) if k == "$top" else v) for k, v in query])
            headers = [(k, v) for k, v in scope["headers"] if k != b"prefer"]
            scope = {**scope, "query_string": kept.encode(), "headers": headers}
        await app(scope, receive, send)

    return serve


@pytest.mark.parametrize("changes", [6, 12])
async def test_an_answer_longer_than_asked_is_read_on_after_its_last_record(
    runtime: Runtime, changes: int
) -> None:
    """Pages of 5 asked, up to 8 records answered and no nextLink: the answer may have been
    cut at the server's own size, so the read goes on after its last record, as after a full
    page. The check of the server's order, which gets up to 8 records for one, holds."""
    changed = KEYS[3 : 3 + changes]
    async with _synced_once(runtime, lambda app: _with_top_of_its_own(app, 8), 15, 5) as sandbox:
        for key in changed:
            sandbox.set_status(key, "Closed")

        report = await runtime.engine.sync_all()

    assert (report.run.outcome, report.run.status_changes) == ("ok", changes)
    assert {await status_of(runtime, k) for k in changed} == {"sold"}


async def test_a_server_whose_top_is_the_total_in_pages_smaller_than_asked_is_read_through(
    runtime: Runtime, mls: Mls
) -> None:
    """`$top` of 250 is the whole answer's cap, in pages of 200 (the server's largest) linked
    by nextLink: 250 records in all may have been cut, though the last page holds 50."""
    sandbox, url = mls
    keys = [f"K{n:03d}" for n in range(300)]
    for key in keys:
        sandbox.put(key, "Active")
    await add_incremental(runtime, f"{url}/{TOP_IS_TOTAL_PATH}", keys, page_size=250)
    await runtime.engine.sync_all()
    for key in keys:
        sandbox.set_status(key, "Closed")

    report = await runtime.engine.sync_all()

    assert (report.run.outcome, report.run.status_changes) == ("ok", 300)


async def test_pages_out_of_order_leave_the_cursor_where_the_read_began(runtime: Runtime) -> None:
    """The first page (by key) holds the newest changes, in order, and the second older
    ones: the first was applied and moved the cursor before the second showed the disorder.
    The cursor goes back to where the read began, so the older changes are not skipped:
    every cycle says it cannot read them, none says `ok`."""
    ordered_for_one = partial(_without_orderby, but_for_one=True)
    async with _synced_once(runtime, ordered_for_one, 10, 5, path="") as sandbox:
        started = (await connections.get(runtime.db, "mls-1")).cursor  # type: ignore[union-attr]
        for key in KEYS[5:10] + KEYS[:5]:  # N05..N09 first (older), then N00..N04
            sandbox.set_status(key, "Closed")

        reports = [await runtime.engine.sync_all() for _ in range(2)]

        row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.cursor == started
    for report in reports:
        assert report.run.outcome != "ok"
        assert any("the order asked for" in e.message for e in report.errors)


async def test_a_server_that_ignores_the_order_is_caught_though_its_first_page_looks_ordered(
    runtime: Runtime,
) -> None:
    """Changes to N00, N02, N01, N03 in that order, pages of 2, `$top` read as the total and
    `$orderby` ignored: the first page (N00, N01) happens to be in order, and the read after
    it would skip N02. Before applying a page of an answer that goes on, the daemon asks for
    the first and the last change (one record each), which such a server gives alike."""
    async with _synced_once(runtime, _without_orderby, 4, 2) as sandbox:
        for key in ("N00", "N02", "N01", "N03"):
            sandbox.set_status(key, "Closed")

        report = await runtime.engine.sync_all()

    assert report.run.outcome != "ok" and report.run.status_changes == 0
    assert any("the order asked for" in e.message for e in report.errors)


async def test_a_listing_included_again_is_read_by_the_next_incremental_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """Excluded, a listing is not applied from the changes; sold meanwhile and included again,
    its change is older than the cursor: the next cycle reads it by key."""
    sandbox, url = mls
    for key in ("N00", "N01"):
        sandbox.put(key, "Active")
    await add_incremental(runtime, url, ["N00", "N01"])
    await runtime.engine.sync_all()
    await listings.set_excluded(runtime.db, "L-N00", True, iso(utcnow()))
    sandbox.set_status("N00", "Closed")
    sandbox.set_status("N01", "Pending")  # a later change: the cursor moves past N00's
    await runtime.engine.sync_all()  # reads both changes; N00's listing is excluded
    await listings.set_excluded(runtime.db, "L-N00", False, iso(utcnow()))

    report = await runtime.engine.sync_all()

    assert (report.run.outcome, await status_of(runtime, "N00")) == ("ok", "sold")


async def test_an_ignored_status_is_not_asked_again_every_incremental_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """`Incomplete` is ignored with a warning: the listing's answer was read, so it is not
    one to read again by key at every cycle (a request and a warning each time)."""
    sandbox, url = mls
    sandbox.put("N00", "Incomplete")
    sandbox.put("N01", "Active")
    await add_incremental(runtime, url, ["N00", "N01"])
    first = await runtime.engine.sync_all()

    later = await runtime.engine.sync_all()

    assert (first.run.warnings, later.run.warnings) == (1, 0)
    assert (later.run.outcome, later.run.mls_requests) == ("ok", 1)  # the changes, nothing else


async def test_pages_of_one_record_are_checked_for_order_too(runtime: Runtime) -> None:
    """Pages of one record from a server that reads `$top` as the total and ignores
    `$orderby`: changes to N00, N02, N01 in that order come back as N00, then N01, and the
    read after N01 would skip N02. The order is checked once two records were read."""
    async with _synced_once(runtime, _without_orderby, 3, 1) as sandbox:
        started = (await connections.get(runtime.db, "mls-1")).cursor  # type: ignore[union-attr]
        for key in ("N00", "N02", "N01"):
            sandbox.set_status(key, "Closed")

        report = await runtime.engine.sync_all()

        row = await connections.get(runtime.db, "mls-1")
    assert report.run.outcome != "ok"
    assert any("the order asked for" in e.message for e in report.errors)
    assert row is not None and row.cursor == started


def _moving_mid_read(app: ASGIApp, runtime: Runtime, moves: dict[str, str]) -> ASGIApp:
    """The sandbox MLS, where a request that asks for the key of a listing in `moves` (listing
    id -> its new key) first moves that listing to its new key, as an operator's `listings
    add` might while the MLS is still answering for the old one."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            asked = scope["query_string"].decode()
            for listing_id, key in list(moves.items()):
                if f"'{listing_id.removeprefix('L-')}'" in unquote(asked):
                    del moves[listing_id]
                    spec = ListingSpec(id=listing_id, connection_id="mls-1", listing_key=key)
                    await listings.add_many(runtime.db, [spec], iso(utcnow()))
        await app(scope, receive, send)

    return serve


async def test_a_listing_moved_to_another_key_while_its_old_key_is_read_keeps_its_status(
    runtime: Runtime,
) -> None:
    """L-K1 is moved from K1 (sold in the MLS) to K2 (active) while the MLS answers for K1:
    that answer is no longer about L-K1, and must neither sell it (taking its posts down)
    nor count as its check. The next cycle reads K2."""
    sandbox = sandbox_mls()
    sandbox.put("K1", "Closed")
    sandbox.put("K2", "Active")
    async with serving(_moving_mid_read(build_mls_app(sandbox), runtime, {"L-K1": "K2"})) as url:
        await add_connection(runtime, url)
        await track(runtime, "mls-1", ["K1"], status="active")

        moved = await runtime.engine.sync_all()

        assert await status_of(runtime, "K1") == "active"
        assert moved.run.listings_checked == 0
        row = await listings.get(runtime.db, "L-K1")
        assert row is not None and row.listing_key == "K2" and row.last_checked_at is None

        after = await runtime.engine.sync_all()

        assert (after.run.outcome, after.run.listings_checked) == ("ok", 1)
        assert await status_of(runtime, "K1") == "active"
        row = await listings.get(runtime.db, "L-K1")
        assert row is not None and row.mls_standard_status == "Active"


UNREADABLE, REFUSED = "its record is unreadable", "its request is refused"


@pytest.mark.parametrize(("k1_fails", "outcome"), [(UNREADABLE, "ok"), (REFUSED, "partial")])
async def test_a_listing_moved_to_another_key_while_its_old_key_fails_gets_no_error(
    runtime: Runtime, k1_fails: str, outcome: str
) -> None:
    """L-K1 is moved from K1 to K2 while the MLS answers for K1 with a record that cannot be
    read, or refuses the request (400): that error is K1's (a refused request's, the run's),
    no longer L-K1's, as an answer for K1 would be. L-K1 waits for a read of K2."""
    sandbox = sandbox_mls()
    if k1_fails == UNREADABLE:
        sandbox.put("K1", "Closed", ModificationTimestamp="not a time")
    else:
        sandbox.put("K1", "Closed")
        sandbox.faults.add(Fault("status", status=400, times=10_000, matching="'K1'"))
    sandbox.put("K2", "Active")
    async with serving(_moving_mid_read(build_mls_app(sandbox), runtime, {"L-K1": "K2"})) as url:
        await add_connection(runtime, url)
        await track(runtime, "mls-1", ["K1"], status="active")

        moved = await runtime.engine.sync_all()

        row = await listings.get(runtime.db, "L-K1")
        assert row is not None and row.listing_key == "K2"
        assert (row.last_error, moved.run.outcome) == (None, outcome)

        after = await runtime.engine.sync_all()

        assert (after.run.outcome, after.run.listings_checked) == ("ok", 1)


def _changing_before_the_second_page(
    app: ASGIApp, matching: str, change: Callable[[], object]
) -> ASGIApp:
    """The sandbox MLS, whose nextLinks go on by `$skip` (by offset, as many servers'
    do), where `change` happens once, just before the first page that such a link asks for
    in a query `matching`: the MLS changing while a reader pages through it."""
    changed: list[bool] = []

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        query = unquote_plus(scope["query_string"].decode()) if scope["type"] == "http" else ""
        if "$skip" in query and matching in query and not changed:
            changed.append(True)
            change()
        await app(scope, receive, send)

    return serve


async def test_a_record_changed_between_two_pages_of_changes_hides_no_other(
    runtime: Runtime,
) -> None:
    """B, C and D change (D is sold); while the reader is between the first page (B, C) and
    the second, B changes again and moves to the end of the changes: an offset of 2 now
    starts after D, so a reader that follows the server's nextLink never sees the sale."""
    sandbox = sandbox_mls()
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    for key in "ABCDE":
        sandbox.put(key, "Active", modified=long_ago)
    app = _changing_before_the_second_page(
        build_mls_app(sandbox),
        "ModificationTimestamp ge",
        lambda: sandbox.set_status("B", "Active"),
    )
    async with serving(app) as url:
        await add_incremental(runtime, url, list("ABCDE"), page_size=2)
        await runtime.engine.sync_all()  # the full pass: the cursor is set
        for key, status in (("B", "Pending"), ("C", "Pending"), ("D", "Closed")):
            sandbox.set_status(key, status)

        report = await runtime.engine.sync_all()

        assert await status_of(runtime, "D") == "sold"
        assert report.run.outcome == "ok"


async def test_an_event_compacted_away_while_the_log_is_paged_hides_no_other(
    runtime: Runtime,
) -> None:
    """Events for A, B, C (the sale) and A again: while the reader is between the first page
    (A, B) and the second, the producer compacts A's first event away. An offset of 2 now
    starts after C's event, so a reader that follows the server's nextLink never sees it."""
    sandbox = sandbox_mls()
    for key in "ABCD":
        sandbox.put(key, "Active")
    app = _changing_before_the_second_page(
        build_mls_app(sandbox), "EntityEventSequence gt", sandbox.compact
    )
    async with serving(app) as url:
        await add_connection(runtime, url, mode="events", page_size=2)
        await track(runtime, "mls-1", list("ABCD"))
        await runtime.engine.sync_all()  # the full pass: the log is read from its end
        for key, status in (("A", "Pending"), ("B", "Pending"), ("C", "Closed"), ("A", "Closed")):
            sandbox.set_status(key, status)

        report = await runtime.engine.sync_all()

        assert await status_of(runtime, "C") == "sold"
        assert report.run.outcome == "ok"


async def test_a_listing_gone_from_the_feed_between_two_pages_of_a_batch_removes_no_other(
    runtime: Runtime,
) -> None:
    """A batch of five keys answered in pages of two: while the reader is between the first
    page (A, B) and the second, A leaves the feed. An offset of 2 now starts at D, so C is in
    no page: read as "not in the answer", the active C would be taken off the market."""
    sandbox = sandbox_mls()
    for key in "ABCDE":
        sandbox.put(key, "Active")
    app = _changing_before_the_second_page(
        build_mls_app(sandbox), "ListingKey", lambda: sandbox.delete("A")
    )
    async with serving(app) as url:
        await add_connection(runtime, url, batch_size=5, page_size=2)
        await track(runtime, "mls-1", list("ABCDE"))

        report = await runtime.engine.sync_all()

        assert [await status_of(runtime, k) for k in "BCDE"] == ["active"] * 4
        assert report.run.outcome == "ok"
        await runtime.engine.sync_all()
        assert await status_of(runtime, "A") == "off_market"


async def test_a_key_in_none_of_several_pages_is_removed_once_asked_again(
    runtime: Runtime, mls: Mls
) -> None:
    """Z left the feed: the batch's three pages leave it out, and so does one more query for
    Z alone, a single page: Z is removed, at the cost of that one query."""
    sandbox, url = mls
    for key in "ABCDE":
        sandbox.put(key, "Active")
    await add_connection(runtime, url, batch_size=6, page_size=2)
    await track(runtime, "mls-1", [*"ABCDE", "Z"])

    report = await runtime.engine.sync_all()

    assert await status_of(runtime, "Z") == "off_market"
    assert (report.run.outcome, report.run.mls_requests) == ("ok", 3 + 1)


async def test_a_status_with_a_nul_in_it_fails_only_its_own_listing(
    runtime: Runtime, mls: Mls
) -> None:
    """One record's StandardStatus holds a NUL (`\\u0000`, valid JSON), which PostgreSQL
    refuses in text: that listing alone is in error, and the sale beside it in the same
    answer is applied."""
    sandbox, url = mls
    sandbox.put("K1", "Active")
    sandbox.put("K2", "Active")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["K1", "K2"])
    await runtime.engine.sync_all()
    sandbox.put("K1", "Clo\x00sed")
    sandbox.set_status("K2", "Closed")

    report = await runtime.engine.sync_all()

    assert [await status_of(runtime, k) for k in ("K1", "K2")] == ["active", "sold"]
    assert (report.run.outcome, report.run.errors) == ("partial", 1)
    [error] = report.errors
    assert error.listing_id == "L-K1" and "StandardStatus" in error.message


def _by_offset(request: Request, records: list[dict[str, str]], top: int) -> Response:
    """The page of `records` the request's `$skip` names, `top` of them, with a nextLink by
    `$skip` when more are left: paging as many servers page."""
    skip = int(request.query_params.get("$skip", "0"))
    page: dict[str, object] = {"value": records[skip : skip + top]}
    if skip + top < len(records):
        page["@odata.nextLink"] = str(request.url.include_query_params(**{"$skip": skip + top}))
    return Response(json.dumps(page), media_type="application/json")


def _numbered_listings_server(
    statuses: dict[str, str], stamp: str, finer_times: bool = False, asked: list[str] | None = None
) -> Starlette:
    """An MLS whose ListingKeys are numbers it orders and compares as numbers (9 before
    10), all changed at one moment (`stamp`, a bulk update): it reads the queries of a
    read of changes (`ListingKey gt 'K'` after that moment, `$top`, `$skip`, `$orderby ...
    desc`) and of a by-key batch (`ListingKey in (...)`), as far as these tests send them, and
    sends a nextLink by `$skip` when more is left. `finer_times`: its clock is finer than the
    times it writes (cut short, as a server that writes milliseconds), so the moment sent
    back matches no record exactly and `gt` matches them all: `ListingKey gt 'K'` changes
    nothing. `asked` collects every query's `$top` and `$filter`."""

    def records(request: Request) -> Response:
        query = request.query_params
        text = query.get("$filter", "")
        if asked is not None:
            asked.append(f"{query.get('$top')} {text}")
        keys = sorted(statuses, key=int)
        if " in (" in text:
            keys = [k for k in keys if f"'{k}'" in text]
        elif (after := re.search(r"ListingKey gt '(\d+)'", text)) is not None and not finer_times:
            keys = [k for k in keys if int(k) > int(after.group(1))]
        if "desc" in query.get("$orderby", ""):
            keys.reverse()
        records = [
            {"ListingKey": k, "StandardStatus": statuses[k], "ModificationTimestamp": stamp}
            for k in keys
        ]
        return _by_offset(request, records, int(query.get("$top", "100")))

    return Starlette(routes=[Route("/Property", records)])


async def test_keys_a_server_orders_as_numbers_are_read_on_past_a_page_of_equal_times(
    runtime: Runtime,
) -> None:
    """A bulk update gives 9, 10, 11 and 12 one timestamp, and the server orders them as
    numbers: the read goes on after 10, the last key of its first page in the server's order
    (not "9", the greatest as text, after which the server sends 10 again)."""
    keys = ["9", "10", "11", "12"]
    statuses = dict.fromkeys(keys, "Active")
    stamp = iso(utcnow() + timedelta(seconds=30))
    async with serving(_numbered_listings_server(statuses, stamp)) as url:
        await add_incremental(runtime, url, keys, page_size=2)
        await runtime.engine.sync_all()  # the full pass: the cursor is set before `stamp`
        statuses.update(dict.fromkeys(keys, "Closed"))

        report = await runtime.engine.sync_all()

    assert report.run.outcome == "ok", [e.message for e in report.errors]
    assert [await status_of(runtime, k) for k in keys] == ["sold"] * 4


@pytest.mark.parametrize("group", [7, 8])
async def test_a_bulk_update_on_a_server_with_finer_times_is_read_through_once(
    runtime: Runtime, group: int
) -> None:
    """Seven (or eight: the last page full) keys share one moment on a server whose times are
    finer than those it writes: a query after the last key of a page (the moment cut short)
    sends the whole group again. The read follows the server's nextLinks from there to the
    end of its answer, in as many requests as it has pages."""
    keys = [str(n) for n in range(1, group + 1)]
    statuses = dict.fromkeys(keys, "Active")
    stamp = iso(utcnow() + timedelta(seconds=30))
    asked: list[str] = []
    server = _numbered_listings_server(statuses, stamp, finer_times=True, asked=asked)
    async with serving(server) as url:
        await add_incremental(runtime, url, keys, page_size=2)
        await runtime.engine.sync_all()
        statuses.update(dict.fromkeys(keys, "Closed"))
        asked.clear()

        report = await runtime.engine.sync_all()

    assert report.run.outcome == "ok", [e.message for e in report.errors]
    assert [await status_of(runtime, k) for k in keys] == ["sold"] * len(keys)
    pages = [q for q in asked if "ModificationTimestamp" in q and not q.startswith("1 ")]
    assert len(pages) <= 6, pages  # 4 pages of the group, and what the keyset asks again


async def test_an_empty_page_whose_next_link_points_back_is_a_recorded_error(
    runtime: Runtime, mls: Mls
) -> None:
    """A read of changes gets an empty page whose nextLink names that same page: it stops at
    the second visit with an error naming the loop, not after ten thousand requests."""
    sandbox, url = mls
    sandbox.put("N00", "Active")
    await add_incremental(runtime, url, ["N00"])
    await runtime.engine.sync_all()
    loop = f"{url}/Property?$filter=ModificationTimestamp%20ge%202001-01-01T00:00:00Z"
    body = json.dumps({"value": [], "@odata.nextLink": loop})
    sandbox.faults.add(
        Fault("status", status=200, body=body, matching="ModificationTimestamp", times=50)
    )
    before = sum(sandbox.requests.values())

    report = await runtime.engine.sync_all()

    assert report.run.outcome != "ok"
    assert any("a page already read" in e.message for e in report.errors)
    assert sum(sandbox.requests.values()) - before < 10


def _ticks(moment: str) -> tuple[datetime, int]:
    """A timestamp with up to seven fractional digits, as a server with SQL Server's clock
    compares it: whole seconds, and the fraction in tenths of a microsecond."""
    whole, _, fraction = moment.removesuffix("Z").partition(".")
    return datetime.fromisoformat(whole), int(fraction.ljust(7, "0"))


def _finer_clock_server(
    stamps: dict[str, str],
    statuses: dict[str, str],
    change: Callable[[], object],
    pages_served: list[int],
) -> Starlette:
    """An MLS whose timestamps have seven fractional digits, which it sends as they are and
    compares in full (SQL Server's `datetime2`): a moment sent back cut to microseconds is
    earlier than the records that have it. It reads the filters a read of changes sends
    (`ge`, and the keyset's `gt M or (eq M and ListingKey gt 'K')`), orders by moment then
    key as a number, and pages on by `$skip` nextLinks. `change` happens once, before the
    third page of changes is answered (counted in `pages_served`, which the test clears):
    the MLS changing while a reader pages through it."""

    def records(request: Request) -> Response:
        query = request.query_params
        text, top = query.get("$filter", ""), int(query.get("$top", "100"))
        if "ModificationTimestamp" in text and top > 1:
            pages_served.append(top)
            if len(pages_served) == 3:
                change()
        keys = sorted(statuses, key=lambda k: (_ticks(stamps[k]), int(k)))
        if " in (" in text:
            keys = [k for k in keys if f"'{k}'" in text]
        elif (since := re.search(r"ModificationTimestamp ge (\S+)", text)) is not None:
            keys = [k for k in keys if _ticks(stamps[k]) >= _ticks(since.group(1))]
        elif (keyset := re.search(r"gt (\S+) or .* ListingKey gt '(\d+)'", text)) is not None:
            moment, after = _ticks(keyset.group(1)), int(keyset.group(2))
            keys = [
                k
                for k in keys
                if _ticks(stamps[k]) > moment or (_ticks(stamps[k]) == moment and int(k) > after)
            ]
        if "desc" in query.get("$orderby", ""):
            keys.reverse()
        records = [
            {"ListingKey": k, "StandardStatus": statuses[k], "ModificationTimestamp": stamps[k]}
            for k in keys
        ]
        return _by_offset(request, records, top)

    return Starlette(routes=[Route("/Property", records)])


async def test_a_record_changed_between_two_pages_on_a_server_with_finer_times_hides_no_other(
    runtime: Runtime,
) -> None:
    """A bulk update sells 1..6 at one moment of a server with seven-digit times; while the
    reader is between pages, 1 changes again and moves to the end. A keyset query that sends
    the moment back cut to microseconds gets the group again, so a reader that falls back to
    the server's offset nextLinks skips 3. Sent back as the server wrote it, the moment
    matches, and every page goes on after the one before."""
    keys = [str(n) for n in range(1, 7)]
    long_ago = "2001-01-01T00:00:00.0000000Z"
    stamps, statuses = dict.fromkeys(keys, long_ago), dict.fromkeys(keys, "Active")
    moment = utcnow() + timedelta(seconds=30)
    bulk = f"{moment:%Y-%m-%dT%H:%M:%S}.1234567Z"
    later = f"{moment + timedelta(seconds=1):%Y-%m-%dT%H:%M:%S}.7654321Z"
    pages_served: list[int] = []

    def relisted() -> None:
        stamps["1"], statuses["1"] = later, "Pending"

    async with serving(_finer_clock_server(stamps, statuses, relisted, pages_served)) as url:
        await add_incremental(runtime, url, keys, page_size=2)
        await runtime.engine.sync_all()  # the full pass: the cursor is set before `bulk`
        stamps.update(dict.fromkeys(keys, bulk))
        statuses.update(dict.fromkeys(keys, "Closed"))
        pages_served.clear()

        report = await runtime.engine.sync_all()

    assert report.run.outcome == "ok", [e.message for e in report.errors]
    found = [await status_of(runtime, k) for k in keys]
    assert found == ["pending"] + ["sold"] * 5, (found, pages_served)


def _trailing_empty_page_server(statuses: dict[str, str]) -> Starlette:
    """An MLS that answers a by-key batch in pages of `$top` (as `Prefer` asks) and ends
    every answer with one more page, empty, by a `$skip` nextLink."""

    def records(request: Request) -> Response:
        query = request.query_params
        asked = re.findall(r"'([^']*)'", query.get("$filter", ""))
        found = [k for k in asked if k in statuses]
        size = int(request.headers.get("prefer", "=10").rsplit("=", 1)[1])
        skip = int(query.get("$skip", "0"))
        page: dict[str, object] = {
            "value": [
                {"ListingKey": k, "StandardStatus": statuses[k]} for k in found[skip : skip + size]
            ]
        }
        if skip < len(found) or skip == 0:  # the empty page is the one at or past the end
            page["@odata.nextLink"] = str(
                request.url.include_query_params(**{"$skip": skip + size})
            )
        return Response(json.dumps(page), media_type="application/json")

    return Starlette(routes=[Route("/Property", records)])


async def test_listings_gone_from_a_server_that_ends_each_answer_with_an_empty_page_are_removed(
    runtime: Runtime,
) -> None:
    """Every answer has two pages at least, so Y and Z, in none, are asked again together,
    and that answer has two pages too: each is then asked alone, and an answer for one key
    settles it."""
    statuses = {"A": "Active", "B": "Pending"}
    async with serving(_trailing_empty_page_server(statuses)) as url:
        await add_connection(runtime, url, batch_size=4, page_size=2)
        await track(runtime, "mls-1", ["A", "B", "Y", "Z"])

        report = await runtime.engine.sync_all()

    assert [await status_of(runtime, k) for k in "ABYZ"] == [
        "active",
        "pending",
        "off_market",
        "off_market",
    ]
    assert (report.run.outcome, report.run.mls_requests) == ("ok", 2 + 2 + 2 + 2)
