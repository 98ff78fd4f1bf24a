"""The /v1 admin API as its users meet it, over real HTTP to the daemon as a subprocess:
collections read page by page in a stable order and narrowed by filters, DELETE that never
forgets a live post silently, bulk imports checked whole before anything is written, a sync
that names the run to follow, scoped tokens made with the CLI, and one error shape."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from daemon.sandbox.faults import Fault
from tests.e2e.daemon_process import API_TOKEN, Daemon, DaemonConfig
from tests.helpers import (
    Mls,
    Platforms,
    add_account,
    add_connection,
    add_post,
    add_sandbox_connection,
    clock_cycles_half_a_slot_away,
    track,
)
from tests.integration.test_cli import mls_sync

pytestmark = pytest.mark.slow

PROBLEM_JSON = "application/problem+json"
SECRET = "sk_live_5ecret0f9e7d"  # stands for a secret pasted into a body by mistake
CSV = {"Content-Type": "text/csv"}
NDJSON = {"Content-Type": "application/x-ndjson"}


@asynccontextmanager
async def running(config: DaemonConfig) -> AsyncIterator[Daemon]:
    """The daemon on `config`, ready, its first cycle done; it must still be alive at the end."""
    daemon = config.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)
        yield daemon
        assert daemon.proc.poll() is None, daemon.log()
    finally:
        daemon.stop()


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with `status`; returns its body."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON), answer.headers
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def total_listings(daemon: Daemon) -> int:
    answer = await daemon.call("GET", "/v1/listings", params={"limit": 1})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


async def read_all(daemon: Daemon, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a collection, following `next` (checked against the Link header)."""
    items: list[dict[str, Any]] = []
    answer = await daemon.call("GET", path, params=params or None)
    while True:
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items.extend(page["items"])
        if page["next"] is None:
            assert "link" not in answer.headers and page["next_after"] is None
            return items
        assert answer.headers["link"] == f'<{page["next"]}>; rel="next"'
        answer = await daemon.call("GET", page["next"])


# -- collections -------------------------------------------------------------------------------


async def test_250_listings_read_100_at_a_time_come_each_once_in_id_order_with_their_total(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    keys = [f"K{n:03d}" for n in range(250)]
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, keys)
    async with running(daemon_config) as daemon:
        first = await daemon.call("GET", "/v1/listings", params={"limit": 100})
        seen = await read_all(daemon, "/v1/listings", limit=100)

    page = first.json()
    assert page["total"] == 250 and len(page["items"]) == 100
    assert page["next_after"] == "L-K099"
    assert page["next"] == "/v1/listings?limit=100&after=L-K099"
    assert [item["id"] for item in seen] == [f"L-{k}" for k in keys]


async def test_a_listing_added_or_removed_between_pages_neither_repeats_nor_shifts_one(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """Keyset paging: a listing that sorts before the cursor is not seen on later pages, the
    cursor's own listing may go, and none of the others moves onto a page already read or
    off the one it belongs on."""
    keys = [f"K{n:03d}" for n in range(250)]
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, keys)
    async with running(daemon_config) as daemon:
        first = (await daemon.call("GET", "/v1/listings", params={"limit": 100})).json()
        new = {"connection_id": "mls-1", "listing_key": "K000-b"}
        added = await daemon.call("PUT", "/v1/listings/L-K000-b", json=new)
        assert added.status_code == 201, added.text
        removed = await daemon.call("DELETE", f"/v1/listings/{first['next_after']}")
        assert removed.status_code == 200, removed.text
        second = (await daemon.call("GET", first["next"])).json()
        third = (await daemon.call("GET", second["next"])).json()

    assert [i["id"] for i in second["items"]] == [f"L-{k}" for k in keys[100:200]]
    assert [i["id"] for i in third["items"]] == [f"L-{k}" for k in keys[200:]]
    assert second["total"] == 250 and third["next"] is None


async def test_filters_narrow_the_listings_and_their_total(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """By connection, by status (`unknown`: no MLS answer yet), excluded or not, by a part
    of the ListingKey, and together; the `next` link keeps the filters."""
    sandbox, url = mls
    sold = [f"K1{n:02d}" for n in range(10)]  # K100..K109
    active = [f"K1{n:02d}" for n in range(10, 30)]  # K110..K129
    pending = [f"Q2{n:02d}" for n in range(10)]
    for key in sold:
        sandbox.put(key, "Closed")
    for key in pending:
        sandbox.put(key, "Pending")
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, active)
        await track(rt, "mls-1", sold)
        await add_connection(rt, url, "mls-2")
        await track(rt, "mls-2", pending, prefix="M-")
        # L-NEW below is `unknown` until a cycle asks its MLS: none must come meanwhile.
        await clock_cycles_half_a_slot_away(rt.db, rt.settings.sync.interval_seconds)
    async with running(daemon_config) as daemon:
        put = {"connection_id": "mls-1", "listing_key": "Z-1"}
        assert (await daemon.call("PUT", "/v1/listings/L-NEW", json=put)).status_code == 201
        for listing in ("L-K120", "L-K121"):
            excluded = await daemon.call("POST", f"/v1/listings/{listing}/exclude")
            assert excluded.status_code == 200, excluded.text

        async def ids(**params: Any) -> tuple[list[str], int]:
            answer = await daemon.call("GET", "/v1/listings", params=params)
            assert answer.status_code == 200, answer.text
            return [i["id"] for i in answer.json()["items"]], answer.json()["total"]

        by_connection = await ids(connection_id="mls-2")
        by_sold = await ids(status="sold")
        by_pending = await ids(status="pending")
        by_unknown = await ids(status="unknown")
        by_excluded = await ids(excluded="true")
        by_included = await ids(excluded="false")
        by_key = await ids(q="K10")
        together = await ids(connection_id="mls-1", status="active", excluded="false")
        nobody = await ids(connection_id="mls-9")
        cut = (
            await daemon.call("GET", "/v1/listings", params={"status": "active", "limit": 5})
        ).json()
        rest = await read_all(daemon, cut["next"])

    assert by_connection == ([f"M-{k}" for k in pending], 10)
    assert by_sold == ([f"L-{k}" for k in sold], 10)
    assert by_pending == by_connection
    assert by_unknown == (["L-NEW"], 1)
    assert by_excluded == (["L-K120", "L-K121"], 2)
    assert by_included[1] == 39 and "L-K120" not in by_included[0]
    assert by_key == ([f"L-{k}" for k in sold], 10)
    expected = [f"L-{k}" for k in active if k not in ("K120", "K121")]
    assert together == (expected, 18)
    assert nobody == ([], 0)
    assert cut["total"] == 20 and "status=active" in cut["next"]
    assert [i["id"] for i in cut["items"] + rest] == [f"L-{k}" for k in active]
    assert {i["status"] for i in rest} == {"active"}


async def test_runs_a_runs_errors_and_a_listings_audit_trail_page_by_cursor_too(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """Runs newest first; a run's errors and a listing's status changes oldest first; each
    once, whatever the page size."""
    sandbox = mls[0]
    weird = [f"W{n}" for n in range(5)]
    for key in weird:
        sandbox.put(key, "Weird")  # a status no mapping knows: one error each
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1"])
        await track(rt, "mls-1", weird)
    async with running(daemon_config) as daemon:
        for status in ("Closed", "Active", "Pending"):
            sandbox.set_status("K1", status)
            assert (await daemon.call("POST", "/v1/listings/L-K1/sync")).status_code == 200
        runs = await read_all(daemon, "/v1/runs", limit=2)
        errors = await read_all(daemon, "/v1/runs/1/errors", limit=2)
        trail = await read_all(daemon, "/v1/listings/L-K1/status-changes", limit=1)
        errors_total = (await daemon.call("GET", "/v1/runs/1/errors")).json()["total"]

    assert [r["id"] for r in runs] == [4, 3, 2, 1]
    assert sorted(e["listing_id"] for e in errors) == [f"L-{k}" for k in weird]
    assert [e["id"] for e in errors] == sorted(e["id"] for e in errors) and errors_total == 5
    assert [c["to_status"] for c in trail] == ["active", "sold", "active", "pending"]


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/v1/runs", {"after": "abc"}, "after"),
        ("/v1/runs/1/errors", {"after": "abc"}, "after"),
        ("/v1/listings", {"limit": "1001"}, "limit"),
        ("/v1/listings", {"limit": "0"}, "limit"),
        ("/v1/listings", {"status": "unknowable"}, "status"),
        ("/v1/posts", {"platform": "myspace"}, "platform"),
        ("/v1/runs/abc", {}, "run_id"),
        ("/v1/runs/99999999999999999999", {}, "run_id"),  # beyond SQLite's integers
        ("/v1/runs/99999999999999999999/errors", {}, "run_id"),
    ],
)
async def test_a_bad_cursor_limit_or_filter_is_a_422_problem_naming_the_parameter(
    daemon_config: DaemonConfig, path: str, params: dict[str, str], named: str
) -> None:
    async with running(daemon_config) as daemon:
        answer = await daemon.call("GET", path, params=params)

    body = assert_problem(answer, 422)
    assert body["detail"].startswith(f"{named}:"), body
    assert all(value not in answer.text for value in params.values() if len(value) > 1)


# -- DELETE and what it must not forget silently -------------------------------------------------


@pytest.fixture
async def with_a_live_post(daemon_config: DaemonConfig, mls: Mls, platforms: Platforms) -> None:
    """L-K1 (active) on mls-1 with p-live, published on the Facebook page fb-page; L-K2
    (active) with none; an account fb-spare with no post."""
    platforms[0].publish("facebook", "1093_4417", "fb-token")
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1", "K2"])
        await add_account(rt, "fb-page", "facebook", "fb-token")
        await add_account(rt, "fb-spare", "facebook", "fb-token-2")
        await add_post(rt, "p-live", "L-K1", "fb-page", "1093_4417")


@pytest.mark.usefixtures("with_a_live_post")
async def test_a_listing_with_a_published_post_is_removed_only_when_forced_and_its_post_goes_too(
    daemon_config: DaemonConfig,
) -> None:
    async with running(daemon_config) as daemon:
        refused = await daemon.call("DELETE", "/v1/listings/L-K1")
        kept = await daemon.call("GET", "/v1/posts/p-live")
        forced = await daemon.call("DELETE", "/v1/listings/L-K1", params={"force": "true"})
        listing_after = await daemon.call("GET", "/v1/listings/L-K1")
        post_after = await daemon.call("GET", "/v1/posts/p-live")
        plain = await daemon.call("DELETE", "/v1/listings/L-K2")

    detail = assert_problem(refused, 409)["detail"]
    assert "still live" in detail and "?force=true" in detail and "unpublish" in detail
    assert kept.status_code == 200 and kept.json()["status"] == "published"
    assert forced.status_code == 200, forced.text
    assert forced.json() == {"removed": "L-K1", "live_posts_removed": 1}
    assert_problem(listing_after, 404)
    assert_problem(post_after, 404)
    assert plain.json() == {"removed": "L-K2", "live_posts_removed": 0}


@pytest.mark.usefixtures("with_a_live_post")
async def test_a_live_post_is_forgotten_only_when_forced_and_an_unpublished_one_at_once(
    daemon_config: DaemonConfig, mls: Mls, platforms: Platforms
) -> None:
    platforms[0].publish("facebook", "1093_5000", "fb-token")
    async with running(daemon_config) as daemon:
        body = {"listing_id": "L-K2", "account_id": "fb-page", "platform_post_id": "1093_5000"}
        assert (await daemon.call("PUT", "/v1/posts/p-gone", json=body)).status_code == 201
        mls[0].set_status("K2", "Closed")
        sold = await daemon.call("POST", "/v1/listings/L-K2/sync")
        assert [p["outcome"] for p in sold.json()["posts"]] == ["Deleted"], sold.text

        refused = await daemon.call("DELETE", "/v1/posts/p-live")
        still = await daemon.call("GET", "/v1/posts/p-live")
        forced = await daemon.call("DELETE", "/v1/posts/p-live", params={"force": "true"})
        unpublished = await daemon.call("DELETE", "/v1/posts/p-gone")
        remaining = await daemon.call("GET", "/v1/posts")

    detail = assert_problem(refused, 409)["detail"]
    assert "is published" in detail and "?force=true" in detail
    assert still.json()["status"] == "published"
    assert forced.json() == {"removed": "p-live", "was": "published"}
    assert unpublished.json() == {"removed": "p-gone", "was": "unpublished"}
    assert remaining.json()["total"] == 0


@pytest.mark.usefixtures("with_a_live_post")
async def test_an_account_that_posts_still_refer_to_is_not_removed(
    daemon_config: DaemonConfig,
) -> None:
    async with running(daemon_config) as daemon:
        refused = await daemon.call("DELETE", "/v1/platform-accounts/fb-page")
        kept = await daemon.call("GET", "/v1/platform-accounts/fb-page")
        spare = await daemon.call("DELETE", "/v1/platform-accounts/fb-spare")
        gone = await daemon.call("GET", "/v1/platform-accounts/fb-spare")

    assert "1 post(s)" in assert_problem(refused, 409)["detail"]
    assert kept.status_code == 200
    assert spare.status_code == 200 and spare.json() == {"removed": "fb-spare"}
    assert_problem(gone, 404)


@pytest.mark.usefixtures("with_a_live_post")
async def test_a_connection_goes_with_its_listings_only_when_asked_and_with_live_posts_when_forced(
    daemon_config: DaemonConfig,
) -> None:
    path = "/v1/mls-connections/mls-1"
    async with running(daemon_config) as daemon:
        tracking = await daemon.call("DELETE", path)
        live = await daemon.call("DELETE", path, params={"with_listings": "true"})
        listings_kept = await total_listings(daemon)
        forced = await daemon.call(
            "DELETE", path, params={"with_listings": "true", "force": "true"}
        )
        after = await daemon.call("GET", path)
        listings_left = await total_listings(daemon)
        posts_left = (await daemon.call("GET", "/v1/posts")).json()["total"]

    assert "still tracks 2 listing(s)" in assert_problem(tracking, 409)["detail"]
    assert "?with_listings=true" in tracking.json()["detail"]
    live_detail = assert_problem(live, 409)["detail"]
    assert "1 post(s) of its listings are still live" in live_detail
    assert "?force=true" in live_detail
    assert listings_kept == 2
    assert forced.json() == {"removed": "mls-1", "listings_removed": 2, "live_posts_removed": 1}
    assert_problem(after, 404)
    assert listings_left == 0 and posts_left == 0


async def test_a_post_removed_by_hand_is_unpublished_and_leaves_the_manual_actions(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """An Instagram Login account's post needs a person once its listing sells (and is not
    forgotten without force); when they say they took it down, it is unpublished and no
    longer listed; saying it twice is 409."""
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1"])
        await add_account(rt, "ig-login", "instagram", "t", connected_via="instagram_login")
        await add_post(rt, "ig-1", "L-K1", "ig-login", "555")
    async with running(daemon_config) as daemon:
        mls[0].set_status("K1", "Closed")
        await daemon.call("POST", "/v1/listings/L-K1/sync")
        waiting = (await daemon.call("GET", "/v1/manual-actions")).json()
        not_forgotten = await daemon.call("DELETE", "/v1/posts/ig-1")
        done = await daemon.call("POST", "/v1/posts/ig-1/removed-by-hand")
        after = (await daemon.call("GET", "/v1/manual-actions")).json()
        again = await daemon.call("POST", "/v1/posts/ig-1/removed-by-hand")
        unknown = await daemon.call("POST", "/v1/posts/nope/removed-by-hand")

    assert [p["id"] for p in waiting["posts_to_remove_by_hand"]] == ["ig-1"]
    assert waiting["posts_to_remove_by_hand"][0]["status"] == "manual_required"
    assert "is manual_required" in assert_problem(not_forgotten, 409)["detail"]
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "unpublished" and done.json()["unpublished_at"]
    assert after["posts_to_remove_by_hand"] == []
    assert "already unpublished" in assert_problem(again, 409)["detail"]
    assert_problem(unknown, 404)


# -- bulk import ---------------------------------------------------------------------------------


@pytest.fixture
async def crmls(daemon_config: DaemonConfig, mls: Mls) -> DaemonConfig:
    """The daemon's database with one connection, crmls, and no listing."""
    async with daemon_config.runtime() as rt:
        await add_connection(rt, mls[1], "crmls")
    return daemon_config


def csv_text(rows: list[dict[str, str]]) -> str:
    return "id,connection_id,listing_key\n" + "".join(
        f"{r['id']},{r['connection_id']},{r['listing_key']}\n" for r in rows
    )


def jsonl_text(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# Each form, with what writes it and the line of row i (CSV: a header line comes first).
FORMS: dict[str, tuple[dict[str, str], Callable[[list[dict[str, str]]], str], int]] = {
    "csv": (CSV, csv_text, 2),
    "jsonl": (NDJSON, jsonl_text, 1),
}


def rows(count: int) -> list[dict[str, str]]:
    return [
        {"id": f"L-{n:04d}", "connection_id": "crmls", "listing_key": f"K-{n:04d}"}
        for n in range(count)
    ]


@pytest.mark.parametrize("form", sorted(FORMS))
async def test_an_import_tracks_every_row(crmls: DaemonConfig, form: str) -> None:
    headers, write, _ = FORMS[form]
    async with running(crmls) as daemon:
        answer = await daemon.call(
            "POST", "/v1/listings/import", content=write(rows(500)), headers=headers
        )
        listed = await read_all(daemon, "/v1/listings", limit=1000)
        again = await daemon.call(
            "POST", "/v1/listings/import", content=write(rows(500)), headers=headers
        )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"rows": 500, "added_or_repointed": 500}
    assert again.json() == {"rows": 500, "added_or_repointed": 0}  # the same file, twice
    assert [i["id"] for i in listed] == [r["id"] for r in rows(500)]
    assert {i["status"] for i in listed} == {None}  # the MLS says, at the next cycle


@pytest.mark.parametrize("form", sorted(FORMS))
async def test_an_import_saved_with_a_bom_and_crlf_line_ends_is_read_like_any_other(
    crmls: DaemonConfig, form: str
) -> None:
    """What editors on Windows save (Excel's "CSV UTF-8", Notepad): the CLI reads such a file,
    and so does the API."""
    headers, write, _ = FORMS[form]
    body = ("\ufeff" + write(rows(3)).replace("\n", "\r\n")).encode("utf-8")
    async with running(crmls) as daemon:
        answer = await daemon.call("POST", "/v1/listings/import", content=body, headers=headers)
        listed = await read_all(daemon, "/v1/listings")

    assert answer.status_code == 200, answer.text
    assert [(i["id"], i["listing_key"]) for i in listed] == [
        (r["id"], r["listing_key"]) for r in rows(3)
    ]


@pytest.mark.parametrize("form", sorted(FORMS))
async def test_one_bad_row_among_many_imports_nothing_and_each_bad_line_is_named(
    crmls: DaemonConfig, form: str
) -> None:
    """A bad id, an unknown connection, an id given twice, a missing key: each named by its
    line, none repeated (the secret-looking values are absent), and nothing written."""
    headers, write, first_line = FORMS[form]
    given = rows(300)
    given[49]["id"] = f"{SECRET}!"
    given[119]["connection_id"] = f"conn-{SECRET}"
    given[199]["id"] = given[2]["id"]
    given[249]["listing_key"] = ""
    async with running(crmls) as daemon:
        before = await total_listings(daemon)
        answer = await daemon.call(
            "POST", "/v1/listings/import", content=write(given), headers=headers
        )
        after = await total_listings(daemon)

    body = assert_problem(answer, 422)
    lines = [n + first_line for n in (49, 119, 199, 249)]
    assert [e["line"] for e in body["errors"]] == lines
    bad_id, unknown, twice, no_key = (e["message"] for e in body["errors"])
    assert bad_id.startswith(f"line {lines[0]}: id: ")
    assert unknown == f"line {lines[1]}: connection_id: no MLS connection has this id"
    assert twice == f"line {lines[2]}: this id is already on line {2 + first_line}"
    assert no_key.startswith(f"line {lines[3]}: listing_key: ")
    assert SECRET not in answer.text and "L-0002" not in answer.text
    assert before == after == 0


async def test_a_csv_row_with_too_few_or_too_many_fields_is_named_plainly(
    crmls: DaemonConfig,
) -> None:
    """A short row lacks a required column; a long one (a comma in a value that needed
    quotes) says so; neither repeats a value."""
    body = (
        "id,connection_id,listing_key\n"
        "L-1,crmls,K-1\n"
        "L-2,crmls\n"
        f"L-3,crmls,K-3,{SECRET}\n"
        "L-4,crmls,K-4\n"
    )
    async with running(crmls) as daemon:
        answer = await daemon.call("POST", "/v1/listings/import", content=body, headers=CSV)
        after = await total_listings(daemon)

    problem = assert_problem(answer, 422)
    assert [e["message"] for e in problem["errors"]] == [
        "line 3: listing_key: required",
        "line 4: 4 fields, but the header names 3 (quote a value that holds a comma)",
    ]
    assert SECRET not in answer.text and after == 0


@pytest.mark.parametrize(
    ("form", "body"),
    [
        ("csv", f"id,connection_id,listing_key,{SECRET}\nL-1,crmls,K-1,x\n"),
        (
            "jsonl",
            json.dumps({"id": "L-1", "connection_id": "crmls", "listing_key": "K", SECRET: 1}),
        ),
    ],
    ids=["csv-column", "jsonl-key"],
)
async def test_an_unknown_column_or_field_is_refused_without_repeating_its_name(
    crmls: DaemonConfig, form: str, body: str
) -> None:
    """A name is input too: a secret pasted as a column or a key is not repeated."""
    async with running(crmls) as daemon:
        answer = await daemon.call(
            "POST", "/v1/listings/import", content=body, headers=FORMS[form][0]
        )
        after = await total_listings(daemon)

    problem = assert_problem(answer, 422)
    assert [e["line"] for e in problem["errors"]] == [1]
    assert problem["errors"][0]["message"].startswith("line 1: ")
    assert SECRET not in answer.text
    assert after == 0


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded", None]
)
async def test_an_import_in_another_content_type_is_415_saying_which_to_send(
    crmls: DaemonConfig, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with running(crmls) as daemon:
        answer = await daemon.call(
            "POST", "/v1/listings/import", content=csv_text(rows(3)), headers=headers
        )
        after = await total_listings(daemon)

    detail = assert_problem(answer, 415)["detail"]
    assert "text/csv" in detail and "application/x-ndjson" in detail
    assert after == 0


async def test_an_import_over_max_import_bytes_is_413_and_one_over_the_body_limit_is_not(
    crmls: DaemonConfig,
) -> None:
    """Imports have their own limit, [daemon] max_import_bytes, above the one of other bodies
    (max_body_bytes, 64 KiB by default)."""
    crmls.add("daemon", max_import_bytes=200_000)
    small, large = csv_text(rows(4000)), csv_text(rows(12_000))
    assert 65_536 < len(small) < 200_000 < len(large)
    async with running(crmls) as daemon:
        refused = await daemon.call("POST", "/v1/listings/import", content=large, headers=CSV)
        after_refused = await total_listings(daemon)
        accepted = await daemon.call("POST", "/v1/listings/import", content=small, headers=CSV)

    assert assert_problem(refused, 413)["detail"] == "request body over 200000 bytes"
    assert after_refused == 0
    assert accepted.status_code == 200 and accepted.json()["rows"] == 4000


# -- sync on demand ------------------------------------------------------------------------------


async def wait_for_end(daemon: Daemon, location: str) -> dict[str, Any]:
    with anyio.fail_after(20):
        while True:
            run: dict[str, Any] = (await daemon.call("GET", location)).json()
            if run["outcome"] != "running":
                return run
            await anyio.sleep(0.05)


async def test_post_sync_answers_202_with_the_run_to_follow_and_that_run_ends_ok(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1", "K2", "K3"])
    async with running(daemon_config) as daemon:
        asked = await daemon.call("POST", "/v1/sync")
        run = await wait_for_end(daemon, asked.headers["location"])

    assert asked.status_code == 202, asked.text
    run_id = asked.json()["run_id"]
    assert asked.headers["location"] == f"/v1/runs/{run_id}" and run_id > 1
    assert run["id"] == run_id and run["outcome"] == "ok"
    assert run["listings_checked"] == 3 and run["trigger"] == "http"


async def test_syncs_asked_for_while_a_cycle_runs_share_one_follow_up_run(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1", "K2"])
    async with running(daemon_config) as daemon:
        mls[0].faults.add(Fault("slow", seconds=1.0))
        first = (await daemon.call("POST", "/v1/sync")).json()
        with anyio.fail_after(10):
            while mls[0].faults.injected == 0:  # the cycle is running, held by the MLS
                await anyio.sleep(0.01)
        second = (await daemon.call("POST", "/v1/sync")).json()
        third = (await daemon.call("POST", "/v1/sync")).json()
        followed = await wait_for_end(daemon, f"/v1/runs/{third['run_id']}")
        ran = await wait_for_end(daemon, f"/v1/runs/{first['run_id']}")
        await anyio.sleep(0.5)  # a third cycle would have begun by now
        history = (await daemon.call("GET", "/v1/runs")).json()

    assert first["outcome"] == "started"
    assert second["outcome"] == third["outcome"] == "queued"
    assert second["run_id"] == third["run_id"] != first["run_id"]
    assert ran["outcome"] == followed["outcome"] == "ok"
    assert [r["id"] for r in history["items"]] == [third["run_id"], first["run_id"], 1]


async def test_a_sync_asked_for_before_a_shutdown_ends_interrupted_and_one_asked_during_it_is_503(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """Whoever follows a run the daemon will never begin sees it end, and a sync asked for
    while the daemon stops is refused, not accepted and lost; the running cycle finishes."""
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1", "K2"])
    stopped = await stop_with_syncs_asked(daemon_config, mls, "/v1/sync", "/v1/sync")

    assert stopped.outcomes("the daemon stopped before this cycle began")


# -- scoped tokens -------------------------------------------------------------------------------


def cli(config: DaemonConfig, *args: str, api: Daemon | None = None) -> str:
    """`mls-sync ARGS` on the daemon's own config and database, or with `api`, over --api with
    the admin token; its stdout (it must succeed)."""
    if api is None:
        env = {"MLS_SYNC_SECRET_KEY": config.secret_key}
        done = mls_sync(*args, "--config", str(config.path), cwd=config.path.parent, env=env)
    else:
        env = {"MLS_SYNC_API_TOKEN": API_TOKEN}
        done = mls_sync("--api", api.url, *args, cwd=config.path.parent, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("over_api", [False, True], ids=["local", "api"])
async def test_a_read_token_made_with_the_cli_reads_is_403_on_a_write_and_401_once_revoked(
    daemon_config: DaemonConfig, over_api: bool
) -> None:
    async with running(daemon_config) as daemon:
        api = daemon if over_api else None
        token = cli(daemon_config, "tokens", "create", "monitoring", "--scope", "read", api=api)
        token = token.strip()
        reads = await daemon.call("GET", "/v1/listings", token=token)
        body = {"connection_id": "mls-1", "listing_key": "K1"}
        writes = await daemon.call("PUT", "/v1/listings/x", token=token, json=body)
        tokens = await daemon.call("GET", "/v1/tokens", token=token)
        cli(daemon_config, "tokens", "revoke", "monitoring", api=api)
        revoked = await daemon.call("GET", "/v1/listings", token=token)
        admin = await daemon.call("GET", "/v1/listings")

    assert reads.status_code == 200, reads.text
    assert "'write'" in assert_problem(writes, 403)["detail"]
    assert "'admin'" in assert_problem(tokens, 403)["detail"]
    assert_problem(revoked, 401)
    assert revoked.headers["www-authenticate"] == "Bearer"
    assert admin.status_code == 200


def audit_lines(daemon: Daemon) -> list[tuple[str, str, str, str]]:
    """(action, record, id, actor) of each audit line the daemon logged."""
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    return [
        (a["action"], a["record"], str(a["id"]), a["actor"])
        for a in lines
        if a.get("event") == "audit"
    ]


async def test_each_write_logs_one_audit_line_naming_the_token_and_no_secret(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """A refused write logs none; a secret given in a body appears nowhere in the log."""
    admin = "token:(configured)"
    async with running(daemon_config) as daemon:
        made = await daemon.call("POST", "/v1/tokens", json={"name": "app", "scope": "write"})
        app = made.json()["token"]
        connection = {"name": "C", "base_url": mls[1], "secret": SECRET}
        await daemon.call("PUT", "/v1/mls-connections/crmls", json=connection)
        account = {"user_id": "default", "platform": "facebook", "access_token": SECRET + "2"}
        await daemon.call("PUT", "/v1/platform-accounts/fb", json=account)
        listing = {"connection_id": "crmls", "listing_key": "K1"}
        await daemon.call("PUT", "/v1/listings/L-1", json=listing, token=app)
        await daemon.call("POST", "/v1/listings/L-1/exclude", token=app)
        refused = await daemon.call("DELETE", "/v1/listings/L-NOPE", token=app)
        await daemon.call("DELETE", "/v1/listings/L-1", token=app)
        logged = audit_lines(daemon)
        log = daemon.log()

    assert refused.status_code == 404
    assert logged == [
        ("created", "api_token", "app", admin),
        ("created", "mls_connection", "crmls", admin),
        ("created", "platform_account", "fb", admin),
        ("created", "listing", "L-1", "token:app"),
        ("excluded", "listing", "L-1", "token:app"),
        ("removed", "listing", "L-1", "token:app"),
    ]
    assert SECRET not in log and app not in log


# -- one error shape -----------------------------------------------------------------------------


async def test_every_v1_error_is_a_problem_with_type_title_status_and_detail(
    daemon_config: DaemonConfig,
) -> None:
    async with running(daemon_config) as daemon:
        made = await daemon.call("POST", "/v1/tokens", json={"name": "r", "scope": "read"})
        reader = made.json()["token"]
        big = {"connection_id": "c", "listing_key": "k" * 100_000}
        refusals = {
            401: await daemon.call("GET", "/v1/listings", token=None),
            403: await daemon.call("POST", "/v1/sync", token=reader),
            404: await daemon.call("GET", "/v1/listings/nope"),
            405: await daemon.call("DELETE", "/v1/sync"),
            409: await daemon.call("POST", "/v1/tokens", json={"name": "r", "scope": "read"}),
            413: await daemon.call("PUT", "/v1/listings/x", json=big),
            415: await daemon.call("POST", "/v1/listings/import", content="x"),
            422: await daemon.call("GET", "/v1/runs", params={"after": "abc"}),
        }
        no_route = await daemon.call("GET", "/v1/no-such-thing")

    for status, answer in refusals.items():
        assert_problem(answer, status)
    assert_problem(no_route, 404)


async def test_a_write_while_another_process_holds_the_database_is_a_503_problem_to_retry(
    daemon_config: DaemonConfig,
) -> None:
    """Another writer (a CLI command, the sqlite3 shell) keeps the write lock past the
    daemon's busy timeout (5 s): the caller hears to try again, and then it works."""
    token = {"name": "ci", "scope": "read"}
    async with running(daemon_config) as daemon:
        other = sqlite3.connect(daemon_config.database, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            busy = await daemon.call("POST", "/v1/tokens", json=token)
            reads = await daemon.call("GET", "/v1/tokens")
        finally:
            other.execute("ROLLBACK")
            other.close()
        again = await daemon.call("POST", "/v1/tokens", json=token)

    assert "try again" in assert_problem(busy, 503)["detail"]
    assert busy.headers["retry-after"] == "1"
    assert reads.status_code == 200 and reads.json()["items"] == []  # readers are not held
    assert again.status_code == 201, again.text


async def test_with_no_token_configured_or_made_the_api_answers_503_as_a_problem(
    daemon_config: DaemonConfig,
) -> None:
    daemon = daemon_config.start(api_token=None)
    try:
        await daemon.wait_notify("READY=1")
        answer = await daemon.call("GET", "/v1/listings", token="anything")
    finally:
        daemon.stop()

    assert "mls-sync tokens create" in assert_problem(answer, 503)["detail"]


@dataclass
class StoppedWithSyncs:
    refused: httpx.Response  # a sync asked for while the daemon stops
    pending: dict[str, Any]  # the run of the sync asked for while another ran
    ran: str  # the outcome of the one that was running
    code: int  # the daemon's exit code

    def outcomes(self, why_pending_ended: str) -> bool:
        assert "shutting down" in assert_problem(self.refused, 503)["detail"]
        assert self.pending["outcome"] == "interrupted"
        assert [p["message"] for p in self.pending["problems"]] == [why_pending_ended]
        assert self.ran == "ok" and self.code == 0
        return True


async def stop_with_syncs_asked(
    config: DaemonConfig, mls: Mls, path: str, refused_path: str
) -> StoppedWithSyncs:
    """A sync asked for at `path` runs (slowly), a second waits behind it, SIGTERM comes, and
    a third is asked for at `refused_path` while the daemon stops."""
    daemon = config.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)
        mls[0].faults.add(Fault("slow", seconds=2.0))
        running_run = (await daemon.call("POST", path)).json()["run_id"]
        with anyio.fail_after(10):
            while mls[0].faults.injected == 0:
                await anyio.sleep(0.01)
        pending_run = (await daemon.call("POST", path)).json()["run_id"]
        daemon.send(signal.SIGTERM)
        await daemon.wait_notify("STOPPING=1")
        refused = await daemon.call("POST", refused_path)
        pending = await wait_for_end(daemon, f"/v1/runs/{pending_run}")
        code, _ = await daemon.wait_exit(timeout=20)
    finally:
        daemon.stop()
    with sqlite3.connect(config.database) as db:
        query = "SELECT outcome FROM sync_runs WHERE id = ?"
        (ran,) = db.execute(query, (running_run,)).fetchone()
    return StoppedWithSyncs(refused, pending, ran, code)
