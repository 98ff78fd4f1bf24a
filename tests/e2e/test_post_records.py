"""Posts and the daemon as a real process: what a PUT over /v1 accepts, what it means for a post
that was already taken down, and what a SIGKILL between a delete and its record leaves."""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import pytest

from daemon.sandbox.faults import Fault
from tests.e2e.daemon_process import Daemon, DaemonConfig
from tests.helpers import (
    Mls,
    Platforms,
    add_account,
    add_post,
    add_sandbox_connection,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def prepared(daemon_config: DaemonConfig, mls: Mls) -> DaemonConfig:
    """A config file and a database with one listing (L-K1, active) and a Facebook page."""
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1"])
        await add_account(rt, "fb-page", "facebook", "fb-token")
    return daemon_config


@pytest.fixture
async def daemon(prepared: DaemonConfig) -> AsyncIterator[Daemon]:
    """The daemon, ready, its first cycle done."""
    process = prepared.start()
    try:
        await process.wait_notify("READY=1")
        await process.wait_for_run(1)
        yield process
    finally:
        process.stop()


async def test_a_post_id_with_a_trailing_newline_is_refused_and_nothing_is_recorded(
    daemon: Daemon,
) -> None:
    """A regex `$` matches before a final newline; the id must match as a whole, in ASCII
    digits (it goes into the DELETE URL as it is)."""
    for bad in ("1093_4417\n", "\u0661\u0660\u0669\u0663_4417"):
        body = {"listing_id": "L-K1", "account_id": "fb-page", "platform_post_id": bad}

        response = await daemon.call("PUT", "/v1/posts/p-1", json=body)

        assert response.status_code == 422, response.text
        assert "platform_post_id" in response.text and "facebook post id" in response.text
        assert (await daemon.call("GET", "/v1/posts/p-1")).status_code == 404


async def test_every_id_and_key_with_a_trailing_newline_is_refused(daemon: Daemon) -> None:
    """Ids in the path and a listing key in the body are matched whole too (pydantic's
    patterns, unlike Python's `re.match` with `$`, take no final newline)."""
    post = {"listing_id": "L-K1", "account_id": "fb-page", "platform_post_id": "1093_4417"}
    listing = {"connection_id": "mls-1", "listing_key": "K2"}
    for path, body in (
        ("/v1/posts/p-2%0A", post),
        ("/v1/posts/p-2", {**post, "listing_id": "L-K1\n"}),
        ("/v1/listings/L-K2%0A", listing),
        ("/v1/listings/L-K2", {**listing, "listing_key": "K2\n"}),
    ):
        response = await daemon.call("PUT", path, json=body)
        assert response.status_code == 422, (path, body, response.text)
    assert (await daemon.call("GET", "/v1/posts/p-2")).status_code == 404
    assert (await daemon.call("GET", "/v1/listings/L-K2")).status_code == 404


async def test_a_post_of_an_unknown_account_or_listing_is_refused_naming_the_field(
    daemon: Daemon,
) -> None:
    """422 naming the field and how to add the record, never the id given; nothing stored."""
    good = {"listing_id": "L-K1", "account_id": "fb-page", "platform_post_id": "1093_4417"}
    for field, unknown in (("account_id", "fb-nobody"), ("listing_id", "L-NOPE")):
        response = await daemon.call("PUT", "/v1/posts/p-1", json={**good, field: unknown})

        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail.startswith(f"{field}: no ") and "add it first" in detail
        assert unknown not in response.text
    assert (await daemon.call("GET", "/v1/posts/p-1")).status_code == 404


async def test_re_recorded_post_comes_down_when_the_listing_sells_again(
    daemon: Daemon, mls: Mls, platforms: Platforms
) -> None:
    """A PUT says the post is live: a post id that was taken down and is recorded again is
    published again (attempts and errors reset, the change in its note), so it comes down
    when the listing sells again."""
    platforms[0].publish("facebook", "1093_4417", "fb-token")
    first = {"listing_id": "L-K1", "account_id": "fb-page", "platform_post_id": "1093_4417"}
    assert (await daemon.call("PUT", "/v1/posts/p-1", json=first)).status_code == 201
    mls[0].set_status("K1", "Closed")
    sold = await daemon.call("POST", "/v1/listings/L-K1/sync")
    assert [p["outcome"] for p in sold.json()["posts"]] == ["Deleted"]
    mls[0].set_status("K1", "Active")  # the sale fell through; the app posts the listing again
    await daemon.call("POST", "/v1/listings/L-K1/sync")
    platforms[0].publish("facebook", "1093_5000", "fb-token")
    again = {**first, "platform_post_id": "1093_5000"}

    recorded = await daemon.call("PUT", "/v1/posts/p-1", json=again)

    assert recorded.status_code == 200, recorded.text
    post = recorded.json()
    assert post["status"] == "published" and post["attempts"] == 0
    assert post["unpublished_at"] is None and post["last_error"] is None
    assert "was unpublished" in post["note"]
    mls[0].set_status("K1", "Closed")
    sold_again = await daemon.call("POST", "/v1/listings/L-K1/sync")
    assert [p["outcome"] for p in sold_again.json()["posts"]] == ["Deleted"]
    assert not platforms[0].exists("1093_5000")
    assert (await daemon.call("GET", "/v1/posts/p-1")).json()["status"] == "unpublished"


async def test_a_live_post_recorded_for_another_platform_post_is_refused_and_still_comes_down(
    daemon: Daemon, mls: Mls, platforms: Platforms
) -> None:
    """A published post's record is what takes it down: recording that id for another
    platform post would leave the first one live for good. 409 naming the live one, nothing
    changed; the new post is recorded under its own id, and both come down with the listing."""
    sandbox = platforms[0]
    sandbox.publish("facebook", "1093_4417", "fb-token")
    sandbox.publish("facebook", "1093_5000", "fb-token")
    first = {"listing_id": "L-K1", "account_id": "fb-page", "platform_post_id": "1093_4417"}
    assert (await daemon.call("PUT", "/v1/posts/p-1", json=first)).status_code == 201
    assert (await daemon.call("PUT", "/v1/posts/p-1", json=first)).status_code == 200  # the same

    refused = await daemon.call(
        "PUT", "/v1/posts/p-1", json={**first, "platform_post_id": "1093_5000"}
    )

    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "1093_4417" in detail and "still live" in detail and "1093_5000" not in detail
    post = (await daemon.call("GET", "/v1/posts/p-1")).json()
    assert post["platform_post_id"] == "1093_4417" and post["status"] == "published"
    second = {**first, "platform_post_id": "1093_5000"}
    assert (await daemon.call("PUT", "/v1/posts/p-2", json=second)).status_code == 201
    mls[0].set_status("K1", "Closed")
    sold = await daemon.call("POST", "/v1/listings/L-K1/sync")
    assert sorted(p["outcome"] for p in sold.json()["posts"]) == ["Deleted", "Deleted"]
    assert not sandbox.exists("1093_4417") and not sandbox.exists("1093_5000")


async def test_a_post_deleted_just_before_a_sigkill_gets_no_second_delete(
    prepared: DaemonConfig, mls: Mls, platforms: Platforms
) -> None:
    """Outcomes are written in batches, so a SIGKILL can land after a post was deleted and
    before that was written. The DELETE was recorded before it went out: after the restart
    the post is read, found gone, and not sent a second DELETE."""
    sandbox = platforms[0]
    async with prepared.runtime() as rt:
        await add_account(rt, "li-member", "linkedin", "li-token")
        sandbox.publish("linkedin", "urn:li:share:1", "li-token")
        sandbox.publish("facebook", "1093_4417", "fb-token")
        await add_post(rt, "p-li", "L-K1", "li-member", "urn:li:share:1")
        await add_post(rt, "p-fb", "L-K1", "fb-page", "1093_4417")
    mls[0].set_status("K1", "Closed")
    # Facebook answers late, so LinkedIn's outcome waits in the batch, not yet written.
    sandbox.inject("facebook", Fault("slow", seconds=1.0))
    first = prepared.start()
    try:
        with anyio.fail_after(20):
            while not sandbox.successful_deletes["urn:li:share:1"]:
                await anyio.sleep(0.005)
        first.send(signal.SIGKILL)
        assert (await first.wait_exit(timeout=10))[0] == -signal.SIGKILL
    finally:
        first.stop()
    with sqlite3.connect(prepared.database) as db:
        row = db.execute("SELECT status, delete_sent_at FROM social_posts WHERE id = 'p-li'")
        status, sent_at = row.fetchone()
    assert status == "published" and sent_at is not None  # deleted, not yet written
    await anyio.sleep(1.5)  # Facebook finishes the delete it was holding

    second = prepared.start()
    try:
        await second.wait_notify("READY=1")
        await second.wait_for_run(2)
        li = (await second.call("GET", "/v1/posts/p-li")).json()
        fb = (await second.call("GET", "/v1/posts/p-fb")).json()
    finally:
        second.stop()

    assert li["status"] == "unpublished" and "never recorded" in li["note"]
    assert fb["status"] == "unpublished"
    deletes = Counter(c.path for c in sandbox.calls if c.method == "DELETE")
    assert sorted(deletes.values()) == [1, 1], deletes
    assert sandbox.repeated_deletes == Counter()


async def test_a_post_waiting_for_a_person_is_not_re_pointed_by_a_put(
    prepared: DaemonConfig,
) -> None:
    """A manual_required post is still on its platform: a PUT of the same id with another
    platform post id would drop it from the "needs a person" list without anyone removing it.
    It is refused (409) until a person says it is gone."""
    async with prepared.runtime() as rt:
        await add_post(rt, "p-1", "L-K1", "fb-page", "1093_4417")
        async with rt.db.transaction() as conn:
            await conn.execute("UPDATE social_posts SET status = 'manual_required'")
    daemon = prepared.start()
    try:
        await daemon.wait_notify("READY=1")
        body = {"listing_id": "L-K1", "account_id": "fb-page", "platform_post_id": "1093_9999"}

        refused = await daemon.call("PUT", "/v1/posts/p-1", json=body)

        assert refused.status_code == 409, refused.text
        assert "removed-by-hand" in refused.json()["detail"]
        kept = (await daemon.call("GET", "/v1/manual-actions")).json()["posts_to_remove_by_hand"]
        assert [(p["id"], p["platform_post_id"]) for p in kept] == [("p-1", "1093_4417")]
        done = await daemon.call("POST", "/v1/posts/p-1/removed-by-hand")
        assert done.status_code == 200, done.text
        again = await daemon.call("PUT", "/v1/posts/p-1", json=body)
        assert again.status_code == 200, again.text  # taken down: the id may be used again
    finally:
        daemon.stop()
