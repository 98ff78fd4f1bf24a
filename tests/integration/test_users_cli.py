"""Users from the command line, on a real database file: `mls-sync users ...`, the `--user` of
the commands that make and list owned records, a database from before users existed, and
the sandbox's agents as users."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from daemon.composition import open_runtime
from daemon.encryption import generate_key
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.queries import AccountQuery, ConnectionQuery, ListingQuery, PageQuery
from daemon.store.database import MIGRATIONS
from tests.helpers import make_settings
from tests.integration.test_cli import mls_sync, sandbox_dir  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

NOW = "2026-01-01T00:00:00.000Z"


def local(tmp_path: Path) -> dict[str, str]:
    """A config without the sandbox in tmp_path; the environment its commands need."""
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    return {"MLS_SYNC_SECRET_KEY": generate_key(), "T": "tok"}


def ok(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = mls_sync(*args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(*args: str, cwd: Path, env: dict[str, str]) -> Any:
    return json.loads(ok(*args, "--json", cwd=cwd, env=env))


def test_a_user_is_added_listed_shown_replaced_and_removed(tmp_path: Path) -> None:
    env = local(tmp_path)
    user = ("users", "add", "--id", "agent-7", "--name", "Agent Seven")
    added = ok(
        *user,
        "--email",
        "agent7@example.com",
        "--time-zone",
        "Europe/Paris",
        "--notify",
        "listing.sold",
        "--notify",
        "post.*",
        cwd=tmp_path,
        env=env,
    )
    listed = ok("users", "list", cwd=tmp_path, env=env)
    shown = as_json("users", "show", "agent-7", cwd=tmp_path, env=env)
    replaced = ok(*user, "--notify-mode", "daily_digest", cwd=tmp_path, env=env)
    after = as_json("users", "show", "agent-7", cwd=tmp_path, env=env)
    removed = ok("users", "remove", "agent-7", cwd=tmp_path, env=env)
    gone = mls_sync("users", "show", "agent-7", cwd=tmp_path, env=env)

    assert added.strip() == "user agent-7 added"
    assert "agent-7" in listed and "listing.sold,post.*" in listed and "default" in listed
    assert shown["email"] == "agent7@example.com" and shown["time_zone"] == "Europe/Paris"
    assert shown["notify_events"] == ["listing.sold", "post.*"]
    assert replaced.strip() == "user agent-7 updated"
    assert after["notify_mode"] == "daily_digest" and after["notify_events"] == []
    assert removed.strip() == "user agent-7 removed"
    assert gone.returncode == 1 and "no user has this id" in gone.stderr


def test_bad_user_input_exits_2_naming_the_field_and_changes_nothing(tmp_path: Path) -> None:
    env = local(tmp_path)
    ok("users", "add", "--id", "a1", "--name", "A", cwd=tmp_path, env=env)
    before = as_json("users", "show", "a1", cwd=tmp_path, env=env)
    add = ("users", "add", "--id", "a1", "--name", "A")
    refused = {
        "email": mls_sync(*add, "--email", "a@@b", cwd=tmp_path, env=env),
        "time_zone": mls_sync(*add, "--time-zone", "Moon/Base", cwd=tmp_path, env=env),
        "notify_events": mls_sync(*add, "--notify", "listing.flew", cwd=tmp_path, env=env),
    }
    unknown_mode = mls_sync(*add, "--notify-mode", "hourly", cwd=tmp_path, env=env)

    for field, result in refused.items():
        assert result.returncode == 2, result.stderr
        assert f"invalid input:\n{field}" in result.stderr, result.stderr
    assert unknown_mode.returncode == 2 and "--notify-mode" in unknown_mode.stderr
    assert as_json("users", "show", "a1", cwd=tmp_path, env=env) == before


def test_connections_and_listings_belong_to_the_user_given_and_lists_narrow_to_one(
    tmp_path: Path,
) -> None:
    """A listing is its connection's user's unless it names its own; a connection replaced
    without --user keeps its user; a user who owns something is not removed."""
    env = local(tmp_path)
    ok("users", "add", "--id", "agent-1", "--name", "One", cwd=tmp_path, env=env)
    ok("users", "add", "--id", "agent-2", "--name", "Two", cwd=tmp_path, env=env)
    connection = ("connections", "add", "--id", "m", "--name", "M")
    where = ("--base-url", "http://127.0.0.1:9", "--secret-env", "T")
    ok(*connection, *where, "--user", "agent-1", cwd=tmp_path, env=env)
    ok(*connection, *where, cwd=tmp_path, env=env)  # replaced, no --user
    ok("listings", "add", "L-1", "--connection", "m", "--key", "K1", cwd=tmp_path, env=env)
    two = ("listings", "add", "L-2", "--connection", "m", "--key", "K2", "--user", "agent-2")
    ok(*two, cwd=tmp_path, env=env)
    csv = tmp_path / "listings.csv"
    csv.write_text("id,connection_id,listing_key,user_id\nL-3,m,K3,agent-2\nL-4,m,K4,\n")
    ok("listings", "import", str(csv), cwd=tmp_path, env=env)
    ghost = mls_sync(*connection, *where, "--user", "ghost", cwd=tmp_path, env=env)
    owner_removed = mls_sync("users", "remove", "agent-1", cwd=tmp_path, env=env)

    def ids(*args: str) -> list[str]:
        return [i["id"] for i in as_json(*args, cwd=tmp_path, env=env)["items"]]

    assert ids("connections", "list", "--user", "agent-1") == ["m"]
    assert ids("connections", "list", "--user", "agent-2") == []
    assert ids("listings", "list", "--user", "agent-1") == ["L-1", "L-4"]
    assert ids("listings", "list", "--user", "agent-2") == ["L-2", "L-3"]
    assert ghost.returncode == 2
    assert "user_id: no user has this id" in ghost.stderr
    assert "mls-sync users add" in ghost.stderr
    assert owner_removed.returncode == 2 and "still owns 1 MLS connection(s)" in (
        owner_removed.stderr
    )


def pre_users_database(path: Path) -> None:
    """A database as mls-sync left it before users: migrations 1 to 4, with a connection,
    a listing and accounts of two users named only by the accounts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        for version, _, sql in MIGRATIONS:
            if version <= 4:
                db.executescript(f"{sql}\nPRAGMA user_version = {version};")
        db.execute(
            "INSERT INTO mls_connections (id, name, base_url, auth_kind, secret_encrypted, "
            "created_at, updated_at) VALUES ('old', 'Old', 'http://127.0.0.1:9', 'bearer', "
            "'sealed', ?, ?)",
            (NOW, NOW),
        )
        db.execute(
            "INSERT INTO listings (id, connection_id, listing_key, created_at, updated_at) "
            "VALUES ('L-old', 'old', 'K-old', ?, ?)",
            (NOW, NOW),
        )
        for account, user in (("fb-old", "agent-9"), ("li-old", "agent-8")):
            db.execute(
                "INSERT INTO platform_accounts (id, user_id, platform, access_token_encrypted, "
                "created_at, updated_at) VALUES (?, ?, 'facebook', 'sealed', ?, ?)",
                (account, user, NOW, NOW),
            )


async def test_a_database_from_before_users_puts_its_records_under_default(
    tmp_path: Path,
) -> None:
    """Opening it migrates it: its connections and listings are the default user's, and the
    user each account named is a user."""
    settings = make_settings(tmp_path)
    pre_users_database(settings.database.path)
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": generate_key()}) as rt:
        ops = Operations.on(OpsContext(rt.db, rt.box))
        users = [u["id"] for u in (await ops.users.list(PageQuery())).items]
        by_default = await ops.connections.list(ConnectionQuery(user="default"))
        listings = await ops.listings.list(ListingQuery(user="default"))
        agent_9 = await ops.accounts.list(AccountQuery(user="agent-9"))
        default_removed: list[str] = []
        try:
            await ops.users.remove("default")
        except ValueError as refused:
            default_removed.append(str(refused))

    assert users == ["agent-8", "agent-9", "default"]
    assert [c["id"] for c in by_default.items] == ["old"]
    assert [row["id"] for row in listings.items] == ["L-old"]
    assert [a["id"] for a in agent_9.items] == ["fb-old"]
    assert default_removed and "cannot be removed" in default_removed[0]


def test_the_sandbox_gives_each_agent_a_user_who_owns_what_their_accounts_posted(
    sandbox_dir: Path,  # noqa: F811 - the fixture
) -> None:
    """A sold listing's user owns the accounts of its posts: the person to tell is the one
    whose posts come down."""
    synced = mls_sync("users", "sync", "default", cwd=sandbox_dir)
    users = json.loads(mls_sync("users", "list", "--json", cwd=sandbox_dir).stdout)["items"]
    with sqlite3.connect(sandbox_dir / "state" / "mls-sync.db") as db:
        mismatched = db.execute(
            "SELECT count(*) FROM social_posts p JOIN listings l ON l.id = p.listing_id "
            "JOIN platform_accounts a ON a.id = p.account_id WHERE l.user_id != a.user_id"
        ).fetchone()[0]
        posts = db.execute("SELECT count(*) FROM social_posts").fetchone()[0]
        owners = {r[0] for r in db.execute("SELECT DISTINCT user_id FROM listings")}

    assert synced.returncode == 0, synced.stderr
    assert "(manual, user:default)" in synced.stdout
    agents = [u for u in users if u["id"] != "default"]
    assert agents and all(
        u["email"] == f"{u['id'].replace('sandbox-agent-', 'agent')}@sandbox.invalid"
        and u["notify_events"]
        == ["listing.sold", "post.needs_person", "account.needs_reauth", "connection.needs_reauth"]
        for u in agents
    )
    assert posts and mismatched == 0
    assert owners == {u["id"] for u in agents}
