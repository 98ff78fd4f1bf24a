"""The event log as an app follows it, over real HTTP to the daemon as a subprocess: every
committed change appears exactly once, in order, with what the app needs to act on it; a
long poll answers as soon as a change commits; filters narrow it; a cursor older than what is
kept is refused rather than skipped."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.daemon_process import API_TOKEN, Daemon, DaemonConfig
from tests.e2e.test_admin_api import assert_problem, read_all, running
from tests.e2e.test_cli_against_daemon import mls_sync
from tests.helpers import Mls, Platforms, add_account, add_connection, add_post, track

pytestmark = pytest.mark.slow


async def _seed(config: DaemonConfig, mls: Mls, platforms: Platforms) -> None:
    sandbox, url = mls
    platforms[0].publish("facebook", "1000_1", "fb-token")
    for key, status in (("A", "Active"), ("B", "Pending"), ("C", "Active")):
        sandbox.put(key, status)
    async with config.runtime() as rt:
        await add_connection(rt, url)
        await track(rt, "mls-1", ["A", "B", "C"])
        await add_account(rt, "fb-1", "facebook", "fb-token")
        await add_post(rt, "post-A", "L-A", "fb-1", "1000_1")


async def follow(daemon: Daemon, after: int = 0, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every event after `after`, read page by page through `next_after`, and where the next
    read starts."""
    seen: list[dict[str, Any]] = []
    while True:
        answer = await daemon.call("GET", "/v1/events", params={"after": after, **params})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += body["items"]
        if body["next_after"] == after:
            return seen, after
        after = body["next_after"]


async def _market_moves(daemon: Daemon, mls: Mls) -> None:
    """A sells, B goes back on the market, C leaves the feed; then a cycle."""
    sandbox, _ = mls
    sandbox.put("A", "Closed")
    sandbox.put("B", "Active")
    sandbox.delete("C")
    daemon.send(signal.SIGUSR1)
    # The signal's run, whatever its id: the clock's slot (of the database's random offset)
    # may start a run of its own first.
    await daemon.wait_for_run(2, trigger="signal")


async def test_every_committed_change_appears_once_in_order_with_what_an_app_needs(
    daemon_config: DaemonConfig, mls: Mls, platforms: Platforms
) -> None:
    await _seed(daemon_config, mls, platforms)
    async with running(daemon_config) as daemon:
        await _market_moves(daemon, mls)
        events, _ = await follow(daemon, limit=2)  # small pages: the cursor is what carries
        audit = {
            key: await read_all(daemon, f"/v1/listings/L-{key}/status-changes") for key in "ABC"
        }

    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)), "ids only grow, and no event is read twice"
    listing_events = [e for e in events if e["type"].startswith("listing.")]
    # One event per audit row: the same listing, the same move.
    assert Counter(
        (e["data"]["listing"]["id"], e["data"]["change"]["from"], e["data"]["change"]["to"])
        for e in listing_events
    ) == Counter(
        (row["listing_id"], row["from_status"], row["to_status"])
        for rows in audit.values()
        for row in rows
    )
    kinds = Counter(e["type"] for e in events)
    assert kinds["listing.sold"] == 1
    assert kinds["listing.restored"] == 1
    assert kinds["listing.removed"] == 1
    assert kinds["post.unpublished"] == 1
    # The start's run and the signal's each end with one event; a run of the clock's slot
    # may have fallen within the test too.
    finished = Counter(e["data"]["run"]["trigger"] for e in events if e["type"] == "run.finished")
    assert (finished["startup"], finished["signal"]) == (1, 1)
    assert set(finished) <= {"startup", "signal", "schedule", "catch_up"}

    sold = next(e for e in events if e["type"] == "listing.sold")
    assert sold["data"]["listing"] | {"mls_modified_at": None} == {
        "id": "L-A",
        "key": "A",
        "connection_id": "mls-1",
        "user_id": "default",
        "status": "sold",
        "mls_standard_status": "Closed",
        "mls_status": "Closed",
        "mls_modified_at": None,
        "url": "/v1/listings/L-A",
    }
    assert sold["user_id"] == "default"
    taken_down = next(e for e in events if e["type"] == "post.unpublished")
    assert taken_down["data"]["post"]["id"] == "post-A"
    assert taken_down["data"]["post"]["status"] == "unpublished"
    assert taken_down["data"]["post"]["link"].startswith("https://www.facebook.com/")
    assert ids.index(sold["id"]) < ids.index(taken_down["id"]), "the sale comes first"
    assert "fb-token" not in str(events)


async def test_a_long_poll_answers_as_soon_as_a_change_commits(
    daemon_config: DaemonConfig, mls: Mls, platforms: Platforms
) -> None:
    await _seed(daemon_config, mls, platforms)
    async with running(daemon_config) as daemon:
        _, after = await follow(daemon)
        answered: dict[str, Any] = {}

        async def wait_for_a_sale() -> None:
            started = time.monotonic()
            answer = await daemon.call(
                "GET", "/v1/events", params={"after": after, "types": "listing.sold", "wait": 60}
            )
            answered.update(answer.json(), seconds=time.monotonic() - started)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_a_sale)
            await anyio.sleep(0.5)
            assert not answered, "nothing changed yet: the poll is held"
            await _market_moves(daemon, mls)
        # Well before the minute asked for (the cycle itself takes a fraction of a second).
        assert answered["seconds"] < 30
        assert [e["data"]["listing"]["id"] for e in answered["items"]] == ["L-A"]
        # Only what the filter passes; the cursor moves past what it skipped.
        rest, _ = await follow(daemon, answered["next_after"], types="listing.sold")
        assert rest == []


async def test_filters_narrow_the_feed_and_a_bad_one_is_refused_without_echo(
    daemon_config: DaemonConfig, mls: Mls, platforms: Platforms
) -> None:
    await _seed(daemon_config, mls, platforms)
    async with running(daemon_config) as daemon:
        await _market_moves(daemon, mls)
        posts, _ = await follow(daemon, types="post.*,run.finished")
        mine, _ = await follow(daemon, user="default", types="listing.*")
        nobody, _ = await follow(daemon, user="someone-else")
        bad = await daemon.call("GET", "/v1/events", params={"types": "listing.sold,sk_live_x"})
        for wait in ("61", "-1", "soon"):
            assert_problem(await daemon.call("GET", "/v1/events", params={"wait": wait}), 422)
        huge = await daemon.call("GET", "/v1/events", params={"after": str(2**70)})
        _, last = await follow(daemon)
        ahead = await daemon.call("GET", "/v1/events", params={"after": last + 5})

    assert Counter(e["type"] for e in posts) == {"post.unpublished": 1, "run.finished": 2}
    assert {e["type"] for e in mine} == {
        "listing.status_changed",
        "listing.sold",
        "listing.restored",
        "listing.removed",
    }
    assert nobody == []
    body = assert_problem(bad, 422)
    assert "entry 2" in body["detail"] and "sk_live_x" not in bad.text
    assert_problem(huge, 422)
    # Beyond the last event: a reader that kept it would skip what comes; it is told.
    assert f"after={last}" in assert_problem(ahead, 409)["detail"]


async def test_the_cli_reads_the_feed_over_the_api_as_it_does_locally_and_follows_it(
    daemon_config: DaemonConfig, mls: Mls, platforms: Platforms
) -> None:
    await _seed(daemon_config, mls, platforms)
    cwd = daemon_config.path.parent
    api = {"MLS_SYNC_API_TOKEN": API_TOKEN}
    async with running(daemon_config) as daemon:
        remote = mls_sync(cwd, "--api", daemon.url, "events", "list", "--json", **api)
        key = {"MLS_SYNC_SECRET_KEY": daemon_config.secret_key}
        local = mls_sync(cwd, "events", "list", "--json", **key)
        command = [sys.executable, "-m", "daemon", "--api", daemon.url, "events", "follow"]
        async with await anyio.open_process(
            [*command, "--type", "listing.sold"], env={**os.environ, **api}
        ) as follower:
            assert follower.stdout is not None
            await anyio.sleep(1)  # following, from the start of the log
            await _market_moves(daemon, mls)
            with anyio.fail_after(20):
                line = await follower.stdout.receive()
            follower.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                code = await follower.wait()

    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert {e["type"] for e in json.loads(remote.stdout)["items"]} == {
        "listing.status_changed",
        "run.finished",
    }
    sold = json.loads(line.decode().splitlines()[0])
    assert (sold["type"], sold["data"]["listing"]["id"]) == ("listing.sold", "L-A")
    assert code != 0  # cut short by Ctrl-C, as any command is


async def test_a_long_poll_in_flight_is_answered_when_the_daemon_stops(
    daemon_config: DaemonConfig, mls: Mls, platforms: Platforms
) -> None:
    """Not cut off: the reader gets its (empty) answer and where to go on from."""
    await _seed(daemon_config, mls, platforms)
    daemon = daemon_config.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)
        _, after = await follow(daemon)
        answers: list[httpx.Response] = []

        async def poll() -> None:
            params = {"after": after, "wait": 60}
            answers.append(await daemon.call("GET", "/v1/events", params=params))

        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await anyio.sleep(0.5)
            daemon.send(signal.SIGTERM)
            code, _ = await daemon.wait_exit(timeout=30)
    finally:
        daemon.stop()

    assert code == 0
    assert answers[0].status_code == 200
    assert answers[0].json() == {"items": [], "next_after": after}
