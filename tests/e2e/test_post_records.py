"""Recording posts over /v1 as the app does, against the daemon as a real process: what a PUT
accepts, and what it means for a post that was already taken down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.config import load_settings
from daemon.sandbox.mls_server import SandboxMls
from daemon.sandbox.platforms_server import SandboxPlatforms
from daemon.sync.runtime import open_runtime
from tests.e2e.daemon_process import Daemon, free_port, write_config
from tests.helpers import add_account, add_connection, track

Mls = tuple[SandboxMls, str]
Platforms = tuple[SandboxPlatforms, str]


@pytest.fixture
async def daemon(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms
) -> AsyncIterator[Daemon]:
    """The daemon, ready, with one listing (L-K1, active) and a Facebook page account."""
    mls[0].put("K1", "Active")
    config = tmp_path / "config.toml"
    port = free_port()
    write_config(config, port, platforms[1])
    async with open_runtime(load_settings(config, {}), {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        await add_connection(rt, mls[1])
        await track(rt, "mls-1", ["K1"])
        await add_account(rt, "fb-page", "facebook", "fb-token")
    process = Daemon.start(config, port, secret_key)
    try:
        await process.wait_notify("READY=1")
        await process.wait_for_run(1)
        yield process
    finally:
        process.stop()


async def test_a_post_id_with_a_trailing_newline_is_refused_and_nothing_is_recorded(
    daemon: Daemon,
) -> None:
    """A regex `$` matches before a final newline; the id must match as a whole."""
    body = {"listing_id": "L-K1", "account_id": "fb-page", "platform_post_id": "1093_4417\n"}

    response = await daemon.call("PUT", "/v1/posts/p-1", json=body)

    assert response.status_code == 422, response.text
    assert "platform_post_id" in response.text and "facebook post id" in response.text
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
