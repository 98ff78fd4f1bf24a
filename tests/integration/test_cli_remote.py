"""`mls-sync --api URL` against the running daemon (a real subprocess, over real HTTP): the same
output as the same command on the daemon's database, the same refusals with the same exit
codes, and one clear line when the daemon cannot be reached or no token is given."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from tests.e2e.daemon_process import API_TOKEN, NOWHERE, Daemon, DaemonConfig
from tests.helpers import (
    Mls,
    add_account,
    add_connection,
    add_post,
    add_sandbox_connection,
    clock_cycles_half_a_slot_away,
    track,
)
from tests.integration.test_cli import mls_sync
from tests.ports import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
async def daemon(daemon_config: DaemonConfig, mls: Mls) -> AsyncIterator[Daemon]:
    """The daemon with two connections (mls-2's MLS never answers), five listings (L-K3
    excluded), a Facebook page with a published post of L-K2, and two finished runs: the
    first at start, the second after K1 sold."""
    async with daemon_config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1", "K2", "K3", "K4"])
        await add_connection(rt, NOWHERE, "mls-2")
        await track(rt, "mls-2", ["Q1"], prefix="M-")
        await add_account(rt, "fb-page", "facebook", "fb-token")
        await add_post(rt, "p-1", "L-K2", "fb-page", "1093_4417")
        # Reads made locally and over the API are compared: no clock cycle between them.
        await clock_cycles_half_a_slot_away(rt.db, rt.settings.sync.interval_seconds)
    process = daemon_config.start()
    try:
        await process.wait_notify("READY=1")
        await process.wait_for_run(1)
        assert (await process.call("POST", "/v1/listings/L-K3/exclude")).status_code == 200
        mls[0].set_status("K1", "Closed")
        asked = (await process.call("POST", "/v1/sync")).json()
        with anyio.fail_after(20):
            while (await process.call("GET", f"/v1/runs/{asked['run_id']}")).json()[
                "outcome"
            ] == "running":
                await anyio.sleep(0.05)
        yield process
    finally:
        process.stop()


def local(config: DaemonConfig, *args: str) -> subprocess.CompletedProcess[str]:
    """The command on the daemon's own config and database."""
    env = {"MLS_SYNC_SECRET_KEY": config.secret_key}
    return mls_sync(*args, cwd=config.path.parent, env=env)


def remote(
    url: str, *args: str, cwd: Path, token: str | None = API_TOKEN
) -> subprocess.CompletedProcess[str]:
    """The command over --api, from a folder with no config or database to fall back on."""
    env = {"MLS_SYNC_API_TOKEN": token} if token else {}
    return mls_sync("--api", url, *args, cwd=cwd, env=env)


# What each command printed: locally, and over --api.
Said = dict[
    tuple[str, ...], tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]
]


def said_both_ways(
    daemon: Daemon, config: DaemonConfig, commands: Sequence[tuple[str, ...]], elsewhere: Path
) -> Said:
    """Each command run locally and over --api. They only read or are refused, so they run
    a few at a time: each is a process of its own whose start-up (its imports) is most of
    its time, and one after another they took two minutes of the suite."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        here = [pool.submit(local, config, *command) for command in commands]
        there = [pool.submit(remote, daemon.url, *command, cwd=elsewhere) for command in commands]
        return {
            command: (h.result(), t.result())
            for command, h, t in zip(commands, here, there, strict=True)
        }


def differing(said: Said) -> str:
    """Each command whose exit code, stdout or stderr differ between the two, with both. A
    cut list's hint repeats the command as given: over the API, with its --api URL."""
    return "\n\n".join(
        f"{' '.join(command)}:\n  local: {here}\n  --api: {there}"
        for command, (here, there) in said.items()
        if (here.returncode, here.stdout, here.stderr)
        != (
            there.returncode,
            there.stdout,
            re.sub(r"mls-sync --api \S+ ", "mls-sync ", there.stderr),
        )
    )


READS = [
    ("connections", "list"),
    ("connections", "list", "--json"),
    ("connections", "show", "mls-1"),
    ("connections", "show", "mls-2", "--json"),
    ("listings", "list"),
    ("listings", "list", "--json"),
    ("listings", "list", "--limit", "2"),  # cut: the hint on stderr too
    ("listings", "list", "--status", "sold", "--json"),
    ("listings", "list", "--excluded", "--json"),
    ("listings", "show", "L-K1"),
    ("listings", "show", "L-K1", "--json"),
    ("listings", "history", "L-K1", "--json"),
    ("history",),
    ("history", "--json"),
    ("history", "--run", "2"),
    ("history", "--run", "2", "--json"),
    ("posts", "list"),
    ("posts", "list", "--json"),
    ("posts", "show", "p-1"),
    ("accounts", "list"),
    ("accounts", "show", "fb-page", "--json"),
]


async def test_every_read_prints_the_same_over_the_api_as_on_the_database(
    daemon: Daemon, daemon_config: DaemonConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """stdout, stderr and exit code, exactly, for tables and --json alike."""
    said = said_both_ways(daemon, daemon_config, READS, tmp_path_factory.mktemp("elsewhere"))
    assert not differing(said)
    assert all(here.returncode == 0 for here, _ in said.values())
    # What was compared holds what the fixture made, so equal outputs are not two empty ones.
    listed = local(daemon_config, "listings", "list").stdout
    assert all(f"L-K{n}" in listed for n in range(1, 5)) and "M-Q1" in listed
    assert "sold" in local(daemon_config, "listings", "show", "L-K1").stdout
    assert "mls-2" in local(daemon_config, "history", "--run", "2").stdout
    assert "facebook.com" in local(daemon_config, "posts", "list").stdout


REFUSED = [
    # a connection that still tracks listings: 409 over HTTP, exit 2 and its sentence here
    ("connections", "remove", "mls-1"),
    ("listings", "show", "L-NOPE"),
    ("listings", "add", "L-9", "--connection", "mls-9", "--key", "K9"),
    ("listings", "remove", "L-NOPE"),
    ("tokens", "revoke", "nobody"),
    ("posts", "forget", "p-1"),  # live
    ("accounts", "remove", "fb-page"),  # a post refers to it
    ("sync", "--listing", "L-NOPE"),
]


async def test_a_refused_command_exits_the_same_with_the_same_message_over_the_api(
    daemon: Daemon, daemon_config: DaemonConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    said = said_both_ways(daemon, daemon_config, REFUSED, elsewhere)
    assert not differing(said)
    assert all(here.returncode != 0 for here, _ in said.values())
    removed = remote(daemon.url, "connections", "remove", "mls-1", cwd=elsewhere)
    assert removed.returncode == 2
    assert "still tracks 4 listing(s)" in removed.stderr and "--with-listings" in removed.stderr
    assert (await daemon.call("GET", "/v1/mls-connections/mls-1")).status_code == 200


async def test_a_refused_sync_exits_1_over_the_api_as_it_does_locally(
    daemon: Daemon, daemon_config: DaemonConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`sync` of an excluded listing or a paused connection cannot start: exit 1 here, with
    the reason (a refused sync, not a usage error)."""
    assert (await daemon.call("POST", "/v1/mls-connections/mls-2/pause")).status_code == 200
    commands = [("sync", "--listing", "L-K3"), ("sync", "--connection", "mls-2")]
    said = said_both_ways(daemon, daemon_config, commands, tmp_path_factory.mktemp("elsewhere"))
    assert [here.returncode for here, _ in said.values()] == [1, 1]
    assert not differing(said)


async def test_a_change_made_over_the_api_is_what_the_database_then_shows(
    daemon: Daemon, daemon_config: DaemonConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    added = remote(
        daemon.url, "listings", "add", "L-K5", "--connection", "mls-1", "--key", "K5", cwd=elsewhere
    )
    excluded = remote(daemon.url, "listings", "exclude", "L-K5", cwd=elsewhere)
    removed = remote(daemon.url, "listings", "remove", "L-K4", cwd=elsewhere)

    assert added.stdout == "listing L-K5 tracked\n", added.stderr
    assert excluded.stdout == "listing L-K5 excluded from sync\n"
    assert removed.stdout == "listing L-K4 removed\n"
    shown = local(daemon_config, "listings", "list", "--excluded", "--json")
    assert '"id": "L-K5"' in shown.stdout and "L-K4" not in shown.stdout


def test_a_daemon_that_does_not_answer_is_exit_69_with_one_line_naming_its_url(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = remote(url, "listings", "list", cwd=tmp_path)
    assert done.returncode == 69
    assert len(done.stderr.splitlines()) == 1 and url in done.stderr, done.stderr
    assert done.stdout == ""


def test_api_without_a_token_is_exit_2_naming_where_to_put_it(tmp_path: Path) -> None:
    done = remote(NOWHERE, "listings", "list", cwd=tmp_path, token=None)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "MLS_SYNC_API_TOKEN" in done.stderr
    assert done.stdout == ""


async def test_a_wrong_token_is_one_line_saying_the_daemon_refused_it(
    daemon: Daemon, tmp_path: Path
) -> None:
    done = remote(daemon.url, "listings", "list", cwd=tmp_path, token="not-the-token")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "mls-sync: the daemon refused the token (401): missing or wrong bearer token"
    ]
    assert "not-the-token" not in done.stderr


async def test_sync_over_the_api_follows_the_daemons_cycle_and_strict_exits_3_when_partial(
    daemon: Daemon, tmp_path: Path
) -> None:
    """mls-2's MLS never answers: the cycle the daemon runs is partial, as it would be here."""
    done = await anyio.to_thread.run_sync(
        lambda: remote(daemon.url, "sync", "--strict", cwd=tmp_path)
    )
    assert done.returncode == 3, done.stderr
    # Its number: the runs before it depend on the machine (the start's, the clock's).
    followed = re.match(r"run (\d+) \(\w+, all\): partial in ", done.stdout)
    assert followed, done.stdout
    assert "listings checked 3, status changes 0, errors 1" in done.stdout  # L-K3 is excluded
    assert "error [connection] mls-2: cannot reach" in done.stdout
    run = (await daemon.call("GET", f"/v1/runs/{followed[1]}")).json()
    assert run["outcome"] == "partial" and run["finished_at"]


async def test_a_bad_import_over_the_api_exits_65_naming_each_bad_line_as_locally(
    daemon: Daemon, daemon_config: DaemonConfig, tmp_path: Path
) -> None:
    """The same lines are named, with the same exit; over the API no value is repeated."""
    secret = "sk_live_5ecret0f9e7d"
    (tmp_path / "bad.csv").write_text(
        "id,connection_id,listing_key\nL-A,mls-1,KA\n"
        f"L-B,conn-{secret},KB\nL-A,mls-1,KC\nL-D,mls-1,KD\n"
    )
    here = local(daemon_config, "listings", "import", str(tmp_path / "bad.csv"))
    there = remote(daemon.url, "listings", "import", "bad.csv", cwd=tmp_path)

    for done in (here, there):
        assert done.returncode == 65, done.stderr
        said = done.stderr.splitlines()
        assert said[0] == "mls-sync: nothing imported:"
        assert [line.split(":")[0] for line in said[1:]] == ["line 3", "line 4"]
    assert there.stderr.splitlines()[1:] == [
        "line 3: connection_id: no MLS connection has this id",
        "line 4: this id is already on line 2",
    ]
    assert secret not in there.stderr
    listed = (await daemon.call("GET", "/v1/listings")).json()
    assert listed["total"] == 5 and "L-A" not in {i["id"] for i in listed["items"]}


async def test_the_daemon_is_found_from_the_environment_or_a_url_with_a_slash_and_a_token_file(
    daemon: Daemon, daemon_config: DaemonConfig, tmp_path: Path
) -> None:
    """MLS_SYNC_API_URL stands for --api, --api-token-file for MLS_SYNC_API_TOKEN, and a
    trailing slash changes nothing."""
    token_file = tmp_path / "token"
    token_file.write_text(API_TOKEN + "\n")
    expected = local(daemon_config, "listings", "list", "--json").stdout
    from_env = mls_sync(
        "listings",
        "list",
        "--json",
        cwd=tmp_path,
        env={"MLS_SYNC_API_URL": daemon.url, "MLS_SYNC_API_TOKEN": API_TOKEN},
    )
    from_file = mls_sync(
        "--api",
        daemon.url + "/",
        "--api-token-file",
        str(token_file),
        "listings",
        "list",
        "--json",
        cwd=tmp_path,
    )

    assert from_env.returncode == 0 and from_env.stdout == expected, from_env.stderr
    assert from_file.returncode == 0 and from_file.stdout == expected, from_file.stderr


async def test_a_write_with_a_read_token_is_one_line_naming_the_scope_and_changes_nothing(
    daemon: Daemon, tmp_path: Path
) -> None:
    made = await daemon.call("POST", "/v1/tokens", json={"name": "monitoring", "scope": "read"})
    reader = made.json()["token"]

    done = remote(daemon.url, "listings", "exclude", "L-K1", cwd=tmp_path, token=reader)

    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and "'write'" in done.stderr, done.stderr
    assert reader not in done.stderr
    assert (await daemon.call("GET", "/v1/listings/L-K1")).json()["excluded"] is False
