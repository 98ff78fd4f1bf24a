"""Users over /v1, as an app meets them through the daemon as a subprocess: a user is added,
read, listed, replaced and removed; bad input is refused naming the field and changes
nothing; records name only users that exist; lists narrow to one user; and
POST /v1/users/{id}/sync syncs exactly that user's connections, coalescing quick requests."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.sandbox.faults import Fault
from tests.e2e.daemon_process import API_TOKEN, Daemon, DaemonConfig
from tests.e2e.test_admin_api import (
    assert_problem,
    running,
    stop_with_syncs_asked,
    wait_for_end,
)
from tests.e2e.test_cli_against_daemon import mls_sync as cli
from tests.helpers import Mls, add_connection, track

pytestmark = pytest.mark.slow

AGENT = {
    "display_name": "Agent One",
    "email": "agent1@example.com",
    "time_zone": "America/Los_Angeles",
    "notify_events": ["listing.sold", "post.*"],
    "notify_mode": "daily_digest",
}


async def put(daemon: Daemon, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    answer = await daemon.call("PUT", path, json=body)
    assert answer.status_code == status, answer.text
    view: dict[str, Any] = answer.json()
    return view


async def items(daemon: Daemon, path: str, **params: str) -> list[str]:
    """The ids of a list's first page."""
    answer = await daemon.call("GET", path, params=params)
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


async def test_a_user_is_added_read_listed_replaced_and_removed(
    daemon_config: DaemonConfig,
) -> None:
    async with running(daemon_config) as daemon:
        made = await put(daemon, "/v1/users/agent-1", AGENT, 201)
        read = (await daemon.call("GET", "/v1/users/agent-1")).json()
        listed = await items(daemon, "/v1/users")
        replaced = await put(daemon, "/v1/users/agent-1", {"display_name": "A. One"}, 200)
        removed = await daemon.call("DELETE", "/v1/users/agent-1")
        gone = await daemon.call("GET", "/v1/users/agent-1")

    assert made == read
    assert made["notify_events"] == ["listing.sold", "post.*"]
    assert made["notify_mode"] == "daily_digest" and made["time_zone"] == "America/Los_Angeles"
    assert listed == ["agent-1", "default"]  # the default user owns what was there before
    # A PUT replaces: what it leaves out takes its default.
    assert replaced["display_name"] == "A. One" and replaced["email"] is None
    assert replaced["notify_events"] == [] and replaced["created_at"] == made["created_at"]
    assert removed.json() == {"removed": "agent-1"}
    assert assert_problem(gone, 404)["detail"] == "no user has this id"


BAD_FIELDS = {
    "email": "not-an-address@",
    "time_zone": "Mars/Olympus_Mons",
    "notify_events": ["listing.sold", "listing.teleported"],
    "notify_mode": "hourly",
}


async def test_bad_user_input_is_refused_naming_the_field_and_changes_nothing(
    daemon_config: DaemonConfig,
) -> None:
    async with running(daemon_config) as daemon:
        before = await put(daemon, "/v1/users/agent-1", AGENT, 201)
        refusals = {
            field: await daemon.call("PUT", "/v1/users/agent-1", json={**AGENT, field: bad})
            for field, bad in BAD_FIELDS.items()
        }
        new_refused = await daemon.call(
            "PUT", "/v1/users/agent-2", json={**AGENT, "time_zone": "Nowhere/Land"}
        )
        after = (await daemon.call("GET", "/v1/users/agent-1")).json()
        new_absent = await daemon.call("GET", "/v1/users/agent-2")

    for field, answer in refusals.items():
        detail = assert_problem(answer, 422)["detail"]
        assert detail.startswith(field), detail
        assert str(BAD_FIELDS[field]) not in answer.text and "teleported" not in answer.text
    # The one bad event type is named by its place in the list.
    assert assert_problem(refusals["notify_events"], 422)["detail"].startswith(
        "notify_events: event type filter entry 2 names no event type"
    )
    assert "IANA" in assert_problem(refusals["time_zone"], 422)["detail"]
    assert assert_problem(new_refused, 422)
    assert after == before
    assert new_absent.status_code == 404


async def test_records_naming_an_unknown_user_are_refused_with_how_to_add_it(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """A connection, a listing or an account of a user that does not exist is refused, and
    the refusal says how to add the user; nothing is written."""
    connection = {"name": "C", "base_url": mls[1], "secret": "t", "user_id": "ghost"}
    async with running(daemon_config) as daemon:
        refused = [
            await daemon.call("PUT", "/v1/mls-connections/c1", json=connection),
            await daemon.call(
                "PUT",
                "/v1/platform-accounts/fb",
                json={"user_id": "ghost", "platform": "facebook", "access_token": "t"},
            ),
        ]
        await put(daemon, "/v1/mls-connections/c1", {**connection, "user_id": "default"}, 201)
        refused.append(
            await daemon.call(
                "PUT",
                "/v1/listings/L-1",
                json={"connection_id": "c1", "listing_key": "K1", "user_id": "ghost"},
            )
        )
        imported = await daemon.call(
            "POST",
            "/v1/listings/import",
            content="id,connection_id,listing_key,user_id\nL-2,c1,K2,\nL-3,c1,K3,ghost\n",
            headers={"Content-Type": "text/csv"},
        )
        accounts = await items(daemon, "/v1/platform-accounts")
        listings = await items(daemon, "/v1/listings")

    for answer in refused:
        detail = assert_problem(answer, 422)["detail"]
        assert detail.startswith("user_id: no user has this id"), detail
        assert "mls-sync users add" in detail and "ghost" not in detail
    import_refusal = imported.json()
    assert imported.status_code == 422, import_refusal
    assert [e["line"] for e in import_refusal["errors"]] == [3]
    assert accounts == [] and listings == []


async def test_a_user_who_still_owns_records_is_not_removed(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    async with running(daemon_config) as daemon:
        await put(daemon, "/v1/users/agent-1", AGENT, 201)
        connection = {"name": "C", "base_url": mls[1], "secret": "t", "user_id": "agent-1"}
        await put(daemon, "/v1/mls-connections/c1", connection, 201)
        owner = await daemon.call("DELETE", "/v1/users/agent-1")
        default = await daemon.call("DELETE", "/v1/users/default")
        still = await daemon.call("GET", "/v1/users/agent-1")

    detail = assert_problem(owner, 409)["detail"]
    assert "1 MLS connection(s), 0 listing(s) and 0 platform account(s)" in detail
    assert "cannot be removed" in assert_problem(default, 409)["detail"]
    assert still.status_code == 200


async def seed_two_users(config: DaemonConfig, mls: Mls) -> None:
    """agent-1's connection `mine` tracks K1 and K2, agent-2's `theirs` K3; all Active."""
    async with config.runtime() as rt:
        users = Operations.on(OpsContext(rt.db, rt.box)).users
        for user in ("agent-1", "agent-2"):
            await users.put(user, {"display_name": user})
        await add_connection(rt, mls[1], "mine", user_id="agent-1")
        await add_connection(rt, mls[1], "theirs", user_id="agent-2")
        await track(rt, "mine", ["K1", "K2"])
        await track(rt, "theirs", ["K3"])
    for key in ("K1", "K2", "K3"):
        mls[0].put(key, "Active")


async def test_lists_narrow_to_one_users_records(daemon_config: DaemonConfig, mls: Mls) -> None:
    """A listing is its connection's user's unless it names its own; posts are their
    listing's user's."""
    await seed_two_users(daemon_config, mls)
    async with running(daemon_config) as daemon:
        listing = {"connection_id": "mine", "listing_key": "K4", "user_id": "agent-2"}
        await put(daemon, "/v1/listings/L-K4", listing, 201)
        account = {"user_id": "agent-2", "platform": "facebook", "access_token": "t"}
        await put(daemon, "/v1/platform-accounts/fb", account, 201)
        post = {"listing_id": "L-K4", "account_id": "fb", "platform_post_id": "1_4"}
        await put(daemon, "/v1/posts/p4", post, 201)
        mine = await items(daemon, "/v1/mls-connections", user="agent-1")
        their_listings = await items(daemon, "/v1/listings", user="agent-2")
        my_listings = await items(daemon, "/v1/listings", user="agent-1")
        their_accounts = await items(daemon, "/v1/platform-accounts", user="agent-2")
        my_accounts = await items(daemon, "/v1/platform-accounts", user="agent-1")
        # The accounts' filter under its older name, as clients written before users use it.
        by_old_name = await items(daemon, "/v1/platform-accounts", user_id="agent-2")
        their_posts = await items(daemon, "/v1/posts", user="agent-2")
        my_posts = await items(daemon, "/v1/posts", user="agent-1")

    assert mine == ["mine"]
    assert my_listings == ["L-K1", "L-K2"] and their_listings == ["L-K3", "L-K4"]
    assert their_accounts == ["fb"] and my_accounts == [] and by_old_name == ["fb"]
    assert their_posts == ["p4"] and my_posts == []


async def test_a_user_sync_syncs_exactly_that_users_connections(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    await seed_two_users(daemon_config, mls)
    async with running(daemon_config) as daemon:  # its first cycle sees them all Active
        for key in ("K1", "K3"):
            mls[0].set_status(key, "Closed")
        asked = await daemon.call("POST", "/v1/users/agent-1/sync")
        run = await wait_for_end(daemon, asked.headers["location"])
        statuses = {
            item["id"]: item["status"]
            for item in (await daemon.call("GET", "/v1/listings")).json()["items"]
        }
        unknown = await daemon.call("POST", "/v1/users/nobody/sync")

    assert asked.status_code == 202, asked.text
    assert asked.json() == {"outcome": "started", "run_id": run["id"]}
    assert asked.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["scope"] == "user:agent-1" and run["outcome"] == "ok"
    assert run["connections"] == 1 and run["listings_checked"] == 2
    # Only agent-1's connection was asked again: K3 (agent-2's) sold unseen.
    assert statuses == {"L-K1": "sold", "L-K2": "active", "L-K3": "active"}
    assert assert_problem(unknown, 404)["detail"] == "no user has this id"


async def test_user_syncs_asked_for_while_one_waits_share_its_run(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """While agent-1's sync runs (held by a slow MLS), two more requests share one follow-up
    run; a third user's request is a run of its own."""
    await seed_two_users(daemon_config, mls)
    async with running(daemon_config) as daemon:
        mls[0].faults.add(Fault("slow", seconds=1.0))
        first = (await daemon.call("POST", "/v1/users/agent-1/sync")).json()
        with anyio.fail_after(10):
            while mls[0].faults.injected == 0:  # agent-1's sync is running, held by the MLS
                await anyio.sleep(0.01)
        answers: list[dict[str, Any]] = []

        async def ask() -> None:
            answers.append((await daemon.call("POST", "/v1/users/agent-1/sync")).json())

        async with anyio.create_task_group() as tg:  # two quick calls, at once
            tg.start_soon(ask)
            tg.start_soon(ask)
        other = (await daemon.call("POST", "/v1/users/agent-2/sync")).json()
        ends = [
            await wait_for_end(daemon, f"/v1/runs/{r['run_id']}")
            for r in (first, answers[0], other)
        ]
        await anyio.sleep(0.5)  # a further run would have begun by now
        runs = (await daemon.call("GET", "/v1/runs")).json()["items"]

    assert first["outcome"] == "started"
    assert [a["outcome"] for a in answers] == ["queued", "queued"]
    assert answers[0]["run_id"] == answers[1]["run_id"] != first["run_id"]
    assert other["run_id"] not in (first["run_id"], answers[0]["run_id"])
    assert [e["outcome"] for e in ends] == ["ok", "ok", "ok"]
    by_scope = sorted((r["scope"], r["id"]) for r in runs if r["scope"].startswith("user:"))
    assert by_scope == sorted(
        [
            ("user:agent-1", first["run_id"]),
            ("user:agent-1", answers[0]["run_id"]),
            ("user:agent-2", other["run_id"]),
        ]
    )


async def test_the_users_commands_answer_over_the_api_as_they_do_locally(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """`mls-sync --api URL users ...`: the same records, and a sync followed to its end."""
    await seed_two_users(daemon_config, mls)
    folder = daemon_config.path.parent
    local_env = {"MLS_SYNC_SECRET_KEY": daemon_config.secret_key}
    add = ("users", "add", "--id", "agent-3", "--name", "Three", "--notify", "listing.*")
    async with running(daemon_config) as daemon:
        api = ("--api", daemon.url)
        remote_env = {"MLS_SYNC_API_TOKEN": API_TOKEN}
        added = cli(folder, *api, *add, **remote_env)
        remote_show = cli(folder, *api, "users", "show", "agent-3", "--json", **remote_env)
        local_show = cli(folder, "users", "show", "agent-3", "--json", **local_env)
        listed = cli(folder, *api, "users", "list", **remote_env)
        # In a thread: the sandbox MLS answers from this test's event loop.
        synced = await anyio.to_thread.run_sync(
            lambda: cli(folder, *api, "users", "sync", "agent-1", **remote_env)
        )
        refused = cli(
            folder,
            *api,
            "users",
            "add",
            "--id",
            "x",
            "--name",
            "X",
            "--time-zone",
            "Nowhere",
            **remote_env,
        )

    assert added.returncode == 0 and added.stdout.strip() == "user agent-3 added", added.stderr
    assert json.loads(remote_show.stdout) == json.loads(local_show.stdout)
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [
        "agent-1",
        "agent-2",
        "agent-3",
        "default",
    ]
    assert synced.returncode == 0, synced.stderr
    assert "(http, user:agent-1): ok" in synced.stdout and "connections 1," in synced.stdout
    assert refused.returncode == 2 and "time_zone" in refused.stderr


async def test_a_user_sync_waiting_when_the_daemon_stops_ends_interrupted_and_the_running_one_ends(
    daemon_config: DaemonConfig, mls: Mls
) -> None:
    """Whoever follows a user's sync the daemon will never begin sees its run end, a sync
    asked for while the daemon stops is refused, and the running one finishes its run."""
    await seed_two_users(daemon_config, mls)
    stopped = await stop_with_syncs_asked(
        daemon_config, mls, "/v1/users/agent-1/sync", "/v1/users/agent-2/sync"
    )

    assert stopped.outcomes("the daemon stopped before this sync began")
