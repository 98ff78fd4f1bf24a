"""The command line as a person uses it: a process of its own (forked from one that has
imported the CLI: tests/cli_forkserver.py), real files, real exit codes."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from daemon.encryption import SecretBox, generate_key
from tests import cli_forkserver
from tests.paths import REPO

pytestmark = pytest.mark.slow


def mls_sync(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLS_SYNC_")}
    # A second guard beside the sandbox: a command that calls out by mistake hits a dead
    # loopback port, never a real platform (pytest-socket does not reach a subprocess).
    full_env.update(
        {
            "MLS_SYNC_PLATFORMS__GRAPH_URL": "http://127.0.0.1:9/graph",
            "MLS_SYNC_PLATFORMS__LINKEDIN_API_URL": "http://127.0.0.1:9/linkedin",
            "MLS_SYNC_PLATFORMS__LINKEDIN_OAUTH_URL": "http://127.0.0.1:9/linkedin",
        }
    )
    full_env.update(env or {})
    return cli_forkserver.run(list(args), cwd=cwd, env=full_env, stdin=stdin)


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Path:
    """A copy of the shipped config.toml, so its database lands in the temp dir."""
    (tmp_path / "config.toml").write_text((REPO / "config.toml").read_text())
    return tmp_path


def test_check_config_refuses_a_bad_file_with_exit_78(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sync]\ninterval_seconds = -1\n")
    result = mls_sync("check-config", cwd=tmp_path)
    assert result.returncode == 78
    assert "[sync] interval_seconds: " in result.stderr and "-1" not in result.stderr
    assert result.stdout == ""


# Latin-1 where UTF-8 is expected: what an editor on another system may save.
NOT_UTF8_CONFIG = "[sync]\n# caf\u00e9 pw=hunter2\ninterval_seconds = 60\n".encode("latin-1")


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_config_file_that_is_not_utf8_exits_78_with_one_line_naming_the_file(
    tmp_path: Path, command: str
) -> None:
    """78 is the exit systemd does not restart on (RestartPreventExitStatus=78)."""
    (tmp_path / "config.toml").write_bytes(NOT_UTF8_CONFIG)
    result = mls_sync(command, cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines() == [
        "mls-sync: invalid configuration: config.toml: not UTF-8 text (line 2, column 6); "
        "save it as UTF-8"
    ]
    assert "hunter2" not in result.stderr and result.stdout == ""


def test_check_config_prints_the_effective_settings_with_secrets_masked(sandbox_dir: Path) -> None:
    key = generate_key()
    result = mls_sync(
        "check-config",
        cwd=sandbox_dir,
        env={"MLS_SYNC_SECRET_KEY": key, "MLS_SYNC_API_TOKEN": "t0p-s3cret"},
    )
    assert result.returncode == 0, result.stderr
    assert '"interval_seconds": 900' in result.stdout
    assert "environment variable MLS_SYNC_SECRET_KEY" in result.stdout
    assert key not in result.stdout and "t0p-s3cret" not in result.stdout


def test_sync_on_the_sandbox_prints_a_summary_and_records_the_run(sandbox_dir: Path) -> None:
    first = mls_sync("sync", cwd=sandbox_dir)
    assert first.returncode == 0, first.stderr
    assert "run 1 (manual, all): ok" in first.stdout
    assert "listings checked 300" in first.stdout
    second = mls_sync("sync", "--quiet", cwd=sandbox_dir)
    assert second.returncode == 0
    history = mls_sync("history", cwd=sandbox_dir)
    assert history.returncode == 0
    assert [line.split()[0] for line in history.stdout.splitlines()[1:]] == ["2", "1"]


def test_a_connection_added_from_the_cli_never_shows_its_secret(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    env = {"MLS_SYNC_SECRET_KEY": generate_key(), "MY_TOKEN": "bearer-abc-123-very-secret"}
    added = mls_sync(
        "connections",
        "add",
        "--id",
        "crmls",
        "--name",
        "CRMLS",
        "--base-url",
        "http://127.0.0.1:9/odata",
        "--secret-env",
        "MY_TOKEN",
        cwd=tmp_path,
        env=env,
    )
    assert added.returncode == 0, added.stderr
    for args in (
        ("connections", "list"),
        ("connections", "show", "crmls"),
        ("connections", "show", "crmls", "--json"),
    ):
        shown = mls_sync(*args, cwd=tmp_path, env=env)
        assert shown.returncode == 0 and "crmls" in shown.stdout
        assert "bearer-abc-123" not in shown.stdout + shown.stderr
    db = (tmp_path / "state" / "mls-sync.db").read_bytes()
    assert b"bearer-abc-123" not in db


def test_a_bad_connection_definition_is_refused_and_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    result = mls_sync(
        "connections",
        "add",
        "--id",
        "x",
        "--name",
        "X",
        "--base-url",
        "ftp://mls.example",
        "--batch-size",
        "0",
        cwd=tmp_path,
        env={"MLS_SYNC_SECRET_KEY": generate_key()},
    )
    assert result.returncode == 2
    assert "base_url" in result.stderr and "batch_size = 0" in result.stderr
    assert not (tmp_path / "state").exists()


def test_a_csv_with_one_bad_row_imports_nothing(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    env = {"MLS_SYNC_SECRET_KEY": generate_key(), "T": "tok"}
    mls_sync(
        "connections",
        "add",
        "--id",
        "m",
        "--name",
        "M",
        "--base-url",
        "http://127.0.0.1:9",
        "--secret-env",
        "T",
        cwd=tmp_path,
        env=env,
    )
    csv = tmp_path / "listings.csv"
    csv.write_text(
        "id,connection_id,listing_key,status\nL1,m,K1,active\nL2,m,,sold\nL3,m,K3,gone\n"
    )

    bad = mls_sync("listings", "import", str(csv), cwd=tmp_path, env=env)

    assert bad.returncode == 65
    assert "line 3: listing_key" in bad.stderr and "line 4: status = 'gone'" in bad.stderr
    listed = mls_sync("listings", "list", cwd=tmp_path, env=env)
    assert "(none)" in listed.stdout

    csv.write_text("id,connection_id,listing_key\nL1,m,K1\nL2,m,K2\n")
    good = mls_sync("listings", "import", str(csv), cwd=tmp_path, env=env)
    assert good.returncode == 0, good.stderr
    assert "2 listing(s) added" in good.stdout


def test_an_unknown_listing_is_a_clear_error_not_a_traceback(sandbox_dir: Path) -> None:
    result = mls_sync("sync", "--listing", "nope", cwd=sandbox_dir)
    assert result.returncode == 1
    assert "no listing has this id" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_explains_itself(tmp_path: Path) -> None:
    for args in (
        ("--help",),
        ("sync", "--help"),
        ("history", "--help"),
        ("connections", "add", "--help"),
        ("listings", "import", "--help"),
        ("check-config", "--help"),
    ):
        result = mls_sync(*args, cwd=tmp_path)
        assert result.returncode == 0 and "Usage: mls-sync" in result.stdout


def test_selective_sync_from_the_cli(sandbox_dir: Path) -> None:
    """pause/resume a connection and exclude/include a listing, then see the effect."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    steps = [
        (("connections", "pause", "sandbox-1"), "connection sandbox-1 paused"),
        (("listings", "exclude", "L-SBX002-000001"), "excluded from sync"),
    ]
    for args, said in steps:
        result = mls_sync(*args, cwd=sandbox_dir)
        assert result.returncode == 0 and said in result.stdout, result.stderr
    synced = mls_sync("sync", cwd=sandbox_dir)
    # The three others (75 listings each); of sandbox-2, all but the excluded one.
    found = re.search(r"connections 3, listings checked (\d+)", synced.stdout)
    assert found is not None, synced.stdout
    assert 74 <= int(found.group(1)) <= 3 * 75 - 1
    refused = mls_sync("sync", "--connection", "sandbox-1", cwd=sandbox_dir)
    assert refused.returncode == 1 and "is paused" in refused.stderr
    for args in (
        ("connections", "resume", "sandbox-1"),
        ("listings", "include", "L-SBX002-000001"),
    ):
        assert mls_sync(*args, cwd=sandbox_dir).returncode == 0
    # Both by-key connections whole again (150); the others read only what changed.
    back = re.search(r"listings checked (\d+)", mls_sync("sync", cwd=sandbox_dir).stdout)
    assert back is not None and int(back.group(1)) >= 2 * 75
    one = mls_sync("sync", "--listing", "L-SBX002-000001", cwd=sandbox_dir)
    assert one.returncode == 0 and "listings checked 1" in one.stdout


def test_removing_a_connection_with_listings_needs_to_be_asked_for(sandbox_dir: Path) -> None:
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    refused = mls_sync("connections", "remove", "sandbox-3", cwd=sandbox_dir)
    assert refused.returncode == 2 and "--with-listings" in refused.stderr
    removed = mls_sync(
        "connections", "remove", "sandbox-3", "--with-listings", "--force", cwd=sandbox_dir
    )
    assert removed.returncode == 0 and "with 75 listing(s)" in removed.stdout


def test_removing_a_connection_whose_listings_have_live_posts_needs_force(
    sandbox_dir: Path,
) -> None:
    """The posts' rows are what takes them down when their listings sell: not dropped unasked."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    live = _live_posts_of(sandbox_dir, "sandbox-3")
    assert live > 0

    refused = mls_sync("connections", "remove", "sandbox-3", "--with-listings", cwd=sandbox_dir)

    assert refused.returncode == 2
    assert f"{live} post(s) of its listings are still live" in refused.stderr
    assert "--force" in refused.stderr
    assert _live_posts_of(sandbox_dir, "sandbox-3") == live
    assert "sandbox-3" in mls_sync("connections", "list", cwd=sandbox_dir).stdout
    forced = mls_sync(
        "connections", "remove", "sandbox-3", "--with-listings", "--force", cwd=sandbox_dir
    )
    assert forced.returncode == 0, forced.stderr
    assert f"with 75 listing(s) and {live} live post(s)" in forced.stdout
    assert _live_posts_of(sandbox_dir, "sandbox-3") == 0


def _live_posts_of(sandbox_dir: Path, connection_id: str) -> int:
    with closing(sqlite3.connect(sandbox_dir / "state" / "mls-sync.db")) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM social_posts p JOIN listings l ON l.id = p.listing_id "
            "WHERE l.connection_id = ? AND p.status != 'unpublished'",
            (connection_id,),
        ).fetchone()
    return int(count)


def test_accounts_posts_and_unpublish_from_the_cli(sandbox_dir: Path) -> None:
    """Record an account and a post for a listing, then take the listing's posts down now."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    env = {"FB_TOKEN": "sandbox-agent1-facebook-token"}
    steps = [
        (
            "accounts",
            "add",
            "--id",
            "my-page",
            "--user",
            "sandbox-agent-1",
            "--platform",
            "facebook",
            "--token-env",
            "FB_TOKEN",
        ),
        (
            "posts",
            "add",
            "my-post",
            "--listing",
            "L-SBX001-000003",
            "--account",
            "my-page",
            "--platform-id",
            "1000_999999",
        ),
    ]
    for args in steps:
        result = mls_sync(*args, cwd=sandbox_dir, env=env)
        assert result.returncode == 0, result.stderr
    bad_id = mls_sync(
        "posts",
        "add",
        "p2",
        "--listing",
        "L-SBX001-000003",
        "--account",
        "my-page",
        "--platform-id",
        "urn:li:share:1",
        cwd=sandbox_dir,
    )
    assert bad_id.returncode == 2 and "not a facebook post id" in bad_id.stderr
    other = ("posts", "add", "my-post", "--listing", "L-SBX001-000003", "--account", "my-page")
    replaced = mls_sync(*other, "--platform-id", "1000_888888", cwd=sandbox_dir)
    assert replaced.returncode == 2 and "1000_999999, which is still live" in replaced.stderr
    unknown = mls_sync(*other[:-1], "nobody", "--platform-id", "1000_888888", cwd=sandbox_dir)
    assert unknown.returncode == 2 and "account_id: no platform account" in unknown.stderr
    shown = mls_sync("posts", "show", "my-post", cwd=sandbox_dir)
    assert "published" in shown.stdout and "https://www.facebook.com/1000_999999" in shown.stdout
    accounts = mls_sync("accounts", "list", cwd=sandbox_dir)
    assert "my-page" in accounts.stdout and "sandbox-agent1-linkedin" in accounts.stdout

    result = mls_sync("unpublish", "--listing", "L-SBX001-000003", cwd=sandbox_dir)

    assert result.returncode == 0, result.stderr
    # The sandbox Facebook has no post 1000_999999 (100/33), but the token can still read
    # page 1000: so it was already deleted. The listing's three sandbox posts are deleted.
    lines = {line.split()[1]: line for line in result.stdout.splitlines()[1:-1]}
    assert "AlreadyGone" in lines["my-post"]
    assert sum("Deleted" in line for line in lines.values()) == 3
    assert "unpublished 3, already gone 1" in result.stdout
    after = mls_sync("posts", "list", "--listing", "L-SBX001-000003", "--json", cwd=sandbox_dir)
    assert {p["status"] for p in json.loads(after.stdout)["items"]} == {"unpublished"}


def test_unpublish_says_which_posts_wait_for_an_account_to_log_in_again(
    sandbox_dir: Path,
) -> None:
    """A listing whose post waits on an account that needs re-authentication is not a listing
    without posts: the command names the post, the account and why."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    env = {"FB_TOKEN": "a-token-facebook-no-longer-accepts"}
    account = ("--id", "my-page", "--user", "sandbox-agent-1", "--platform", "facebook")
    post = ("my-post", "--listing", "L-SBX001-000003", "--account", "my-page")
    for args in (
        ("accounts", "add", *account, "--token-env", "FB_TOKEN"),
        ("posts", "add", *post, "--platform-id", "1000_999999"),
    ):
        assert mls_sync(*args, cwd=sandbox_dir, env=env).returncode == 0
    first = mls_sync("unpublish", "--listing", "L-SBX001-000003", cwd=sandbox_dir)
    assert first.returncode == 0 and "AuthFailed" in first.stdout  # Graph 190: needs_reauth

    again = mls_sync("unpublish", "--listing", "L-SBX001-000003", cwd=sandbox_dir)

    assert again.returncode == 0, again.stderr
    assert "no published post" not in again.stdout
    waiting = [line for line in again.stdout.splitlines() if "my-post" in line]
    assert len(waiting) == 1, again.stdout
    assert "Waiting" in waiting[0] and "my-page" in waiting[0]
    assert "needs_reauth" in waiting[0] and "190" in waiting[0]


# Another process taking posts down: holds the unpublish lease (a row of sync_leases under
# its own host:pid, for ten minutes) until its stdin closes.
HOLD_THE_UNPUBLISH_LEASE = """
import sqlite3, sys
from contextlib import closing
from datetime import timedelta
from daemon.timestamps import iso, utcnow
from daemon.sync.holders import this_process
from daemon.sync.unpublish_lease import LEASE
with closing(sqlite3.connect(sys.argv[1])) as db, db:
    db.execute(
        "INSERT INTO sync_leases (connection_id, holder, expires_at) VALUES (?, ?, ?)",
        (LEASE, this_process() + ":other", iso(utcnow() + timedelta(minutes=10))),
    )
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def another_process_taking_posts_down(database: Path) -> Iterator[None]:
    holder = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, "-c", HOLD_THE_UNPUBLISH_LEASE, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_unpublish_while_another_process_takes_posts_down_lists_each_post_as_waiting(
    sandbox_dir: Path,
) -> None:
    """Under systemd the daemon is often the one taking posts down: the listing's posts are
    listed as waiting, with why, not as absent, and none of them is touched."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    database = sandbox_dir / "state" / "mls-sync.db"

    with another_process_taking_posts_down(database):
        result = mls_sync("unpublish", "--listing", "L-SBX001-000003", cwd=sandbox_dir)

    assert result.returncode == 0, result.stderr
    assert "no published post" not in result.stdout
    waiting = [line for line in result.stdout.splitlines() if "Waiting" in line]
    assert len(waiting) == 3, result.stdout
    assert all("another process is taking posts down" in line for line in waiting)
    after = mls_sync("posts", "list", "--listing", "L-SBX001-000003", "--json", cwd=sandbox_dir)
    assert {p["status"] for p in json.loads(after.stdout)["items"]} == {"published"}


def test_unpublish_lists_a_post_whose_account_token_cannot_be_decrypted_as_waiting(
    sandbox_dir: Path,
) -> None:
    """A token encrypted with another key (a row restored from a database with another key,
    say): the post is listed as waiting, naming its account and the key, not as absent."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    database = sandbox_dir / "state" / "mls-sync.db"
    with closing(sqlite3.connect(database)) as db:
        (listing_id,) = db.execute(
            "SELECT id FROM listings WHERE id NOT IN (SELECT listing_id FROM social_posts) "
            "ORDER BY id LIMIT 1"
        ).fetchone()
    env = {"FB_TOKEN": "sandbox-agent1-facebook-token"}
    account = ("--id", "my-page", "--user", "sandbox-agent-1", "--platform", "facebook")
    post = ("my-post", "--listing", listing_id, "--account", "my-page")
    for args in (
        ("accounts", "add", *account, "--token-env", "FB_TOKEN"),
        ("posts", "add", *post, "--platform-id", "1000_999999"),
    ):
        assert mls_sync(*args, cwd=sandbox_dir, env=env).returncode == 0
    with closing(sqlite3.connect(database)) as db, db:
        db.execute(
            "UPDATE platform_accounts SET access_token_encrypted = ? WHERE id = 'my-page'",
            (SecretBox(generate_key()).encrypt("a token under another key"),),
        )

    result = mls_sync("unpublish", "--listing", listing_id, cwd=sandbox_dir)

    assert result.returncode == 0, result.stderr
    assert "no published post" not in result.stdout
    waiting = [line for line in result.stdout.splitlines() if "my-post" in line]
    assert len(waiting) == 1, result.stdout
    assert "Waiting" in waiting[0] and "cannot read the tokens of account my-page" in waiting[0]
    assert "secret key does not decrypt" in waiting[0]


def test_no_secret_appears_in_the_database_the_logs_or_any_output(sandbox_dir: Path) -> None:
    """Tokens and credentials are encrypted at rest, redacted in logs, never printed."""
    seeded = {
        "MLS_TOKEN": "mls-bearer-5ecret-7f3a9",
        "FB_TOKEN": "EAAB-page-token-5ecret-91c2",
        "LI_REFRESH": "AQX-refresh-5ecret-33aa",
        "LI_SECRET": "li-client-5ecret-0b1e",
    }
    commands = [
        (
            "connections",
            "add",
            "--id",
            "extra",
            "--name",
            "Extra",
            "--base-url",
            "http://127.0.0.1:9/odata",
            "--secret-env",
            "MLS_TOKEN",
        ),
        (
            "accounts",
            "add",
            "--id",
            "fb-x",
            "--user",
            "default",
            "--platform",
            "facebook",
            "--token-env",
            "FB_TOKEN",
        ),
        (
            "accounts",
            "add",
            "--id",
            "li-x",
            "--user",
            "default",
            "--platform",
            "linkedin",
            "--token-env",
            "FB_TOKEN",
            "--refresh-token-env",
            "LI_REFRESH",
            "--client-id",
            "app",
            "--client-secret-env",
            "LI_SECRET",
        ),
        ("sync", "-v"),
        ("sync", "-v"),
        ("history",),
        ("history", "--run", "2", "--json"),
        ("connections", "list", "--json"),
        ("connections", "show", "extra"),
        ("connections", "show", "sandbox-1", "--json"),
        ("accounts", "list", "--json"),
        ("accounts", "show", "li-x", "--json"),
        ("accounts", "show", "sandbox-agent1-facebook"),
        ("posts", "list", "--json"),
        ("listings", "list", "--json"),
        ("check-config",),
    ]
    output = ""
    for args in commands:
        result = mls_sync(*args, cwd=sandbox_dir, env=seeded)
        assert result.returncode == 0, (args, result.stderr)
        output += result.stdout + result.stderr
    assert "status_changed" in output  # the verbose logs really were captured
    state = sandbox_dir / "state"
    # Every file the daemon writes (database, WAL, sandbox state), but the key file itself.
    files = {p.name: p.read_bytes() for p in state.iterdir() if p.name != "sandbox-secret-key"}
    assert {"mls-sync.db", "sandbox-mls.json"} <= set(files)
    secrets = [
        *seeded.values(),
        "sandbox-agent1-facebook-token",
        "sandbox-1-secret",
        (state / "sandbox-secret-key").read_text().strip(),
    ]
    for secret in secrets:
        assert secret not in output, secret
        for name, content in files.items():
            assert secret.encode() not in content, (secret, name)


def test_a_wrong_key_is_refused_clearly_not_with_a_traceback(sandbox_dir: Path) -> None:
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    result = mls_sync(
        "listings", "list", cwd=sandbox_dir, env={"MLS_SYNC_SECRET_KEY": generate_key()}
    )
    assert result.returncode == 1
    assert "does not decrypt the stored secrets" in result.stderr
    assert "Traceback" not in result.stderr


def test_generate_key_prints_a_working_fernet_key(tmp_path: Path) -> None:
    result = mls_sync("generate-key", cwd=tmp_path)
    key = result.stdout.strip()
    assert result.returncode == 0 and len(key) == 44
    assert SecretBox(key).decrypt(SecretBox(key).encrypt("x")) == "x"


def test_the_demo_ends_by_itself_with_a_summary_and_everything_in_step(tmp_path: Path) -> None:
    result = mls_sync(
        "demo", "--duration", "3", "--interval", "0.5", "--listings", "60", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "mls-sync demo: summary" in out
    assert re.search(r"in step with the MLS at the end\s*│\s*yes\s*│", out)
    cycles = int(next(line for line in out.splitlines() if "│ cycles" in line).split("│")[2])
    assert cycles >= 3
    assert "posts taken down: facebook" in out
    # The sandbox agents' e-mail, as the sandbox's SMTP sink received it: each sale mailed.
    rows = {
        ln.split("│")[1].strip(): ln.split("│")[2].strip()
        for ln in out.splitlines()
        if ln.count("│") == 3
    }
    sold = int(rows.get("status changes: sold", "0"))
    assert int(rows["e-mail notifications sent"]) >= sold
    if sold > 0:  # (a listing first seen sold is mailed too, with no change counted)
        assert "e-mail: Sold: listing " in out
    # Every event, signed, at the sandbox's stand-in app: each sale among them.
    assert int(rows["webhook events delivered (signed)"]) >= cycles + sold
    assert int(rows.get("webhook: listing.sold", "0")) >= sold  # (and any first seen sold)
    assert rows["every signature verified"] == "yes" and rows["in event order"] == "yes"
    # A sale the MLS pushed, over the push route: sold and its posts down in seconds.
    assert any(k.startswith("a sale the MLS pushed: L-") for k in rows)
    for waited in ("  sold in mls-sync after", next(k for k in rows if "taken down after" in k)):
        assert float(rows[waited.strip()].removesuffix(" s")) < 3
    assert not (tmp_path / "state").exists()  # the demo used its own scratch database


def test_an_import_that_gives_a_key_twice_or_a_tracked_key_imports_nothing(tmp_path: Path) -> None:
    """A connection's key is tracked by one listing: a file that gives it to two ids, or to a
    new id while another listing tracks it, is refused line by line (exit 65), not a
    traceback, and nothing is imported."""
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    env = {"MLS_SYNC_SECRET_KEY": generate_key(), "T": "tok"}
    add = ["connections", "add", "--id", "m", "--name", "M", "--base-url", "http://127.0.0.1:9"]
    assert mls_sync(*add, "--secret-env", "T", cwd=tmp_path, env=env).returncode == 0
    assert (
        mls_sync(
            "listings", "add", "L-1", "--connection", "m", "--key", "K-1", cwd=tmp_path, env=env
        ).returncode
        == 0
    )
    csv = tmp_path / "listings.csv"
    csv.write_text("id,connection_id,listing_key\nL-2,m,K-2\nL-3,m,K-2\nL-4,m,K-1\n")

    result = mls_sync("listings", "import", str(csv), cwd=tmp_path, env=env)

    assert result.returncode == 65, result.stderr
    assert "line 3: listing_key: line 2 tracks it" in result.stderr
    assert "Traceback" not in result.stderr
    csv.write_text("id,connection_id,listing_key\nL-2,m,K-2\nL-4,m,K-1\n")
    result = mls_sync("listings", "import", str(csv), cwd=tmp_path, env=env)
    assert result.returncode == 65, result.stderr
    assert "line 3: listing_key: listing 'L-1' tracks it" in result.stderr
    listed = mls_sync("listings", "list", "--json", cwd=tmp_path, env=env)
    assert [i["id"] for i in json.loads(listed.stdout)["items"]] == ["L-1"]
    taken = mls_sync(
        "listings", "add", "L-9", "--connection", "m", "--key", "K-1", cwd=tmp_path, env=env
    )
    assert taken.returncode == 2 and "listing 'L-1' tracks this key" in taken.stderr


def test_manual_actions_lists_what_a_person_must_do_with_totals(sandbox_dir: Path) -> None:
    """The posts to remove by hand (with links), and the accounts and connections that need
    new credentials: each list with how many there are in all."""
    database = sandbox_dir / "state" / "mls-sync.db"
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE social_posts SET status = 'manual_required' WHERE id IN "
            "(SELECT id FROM social_posts ORDER BY id LIMIT 2)"
        )
        db.execute(
            "UPDATE platform_accounts SET state = 'needs_reauth' WHERE id = "
            "(SELECT min(id) FROM platform_accounts)"
        )

    table = mls_sync("manual-actions", cwd=sandbox_dir)
    listed = json.loads(mls_sync("manual-actions", "--json", cwd=sandbox_dir).stdout)

    assert table.returncode == 0, table.stderr
    assert "posts to remove by hand: 2" in table.stdout
    assert "accounts to reauthenticate: 1" in table.stdout
    assert "connections to reauthenticate: 0" in table.stdout
    assert "webhook endpoints disabled: 0" in table.stdout
    assert listed["totals"] == {
        "posts_to_remove_by_hand": 2,
        "accounts_to_reauthenticate": 1,
        "connections_to_reauthenticate": 0,
        "webhook_endpoints_disabled": 0,
    }
    assert all(p["link"] for p in listed["posts_to_remove_by_hand"] if p["platform"] != "instagram")


def test_json_output_is_json_alone_even_on_the_sandbox(sandbox_dir: Path) -> None:
    """--json is for scripts: stdout holds the JSON alone; what the sandbox says about itself
    (its addresses, the market's moves) goes to stderr."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    for args in (
        ("sync", "--json"),
        ("sync", "--listing", "L-SBX001-000003", "--json"),
        ("unpublish", "--listing", "L-SBX001-000003", "--json"),
    ):
        result = mls_sync(*args, cwd=sandbox_dir)
        assert result.returncode == 0, (args, result.stderr)
        json.loads(result.stdout)  # nothing else on stdout
        assert "sandbox MLS at" in result.stderr


def test_the_sandbox_change_log_goes_on_across_runs(sandbox_dir: Path) -> None:
    """A consumer keeps the last EntityEventSequence it read: a new run of the sandbox must
    number its changes after the old ones, never again from the start."""
    state = sandbox_dir / "state" / "sandbox-mls.json"
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    first = json.loads(state.read_text())
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    second = json.loads(state.read_text())
    old = [e["EntityEventSequence"] for e in first["entity_events"]]
    new = [e["EntityEventSequence"] for e in second["entity_events"]]
    assert new[: len(old)] == old and len(new) > len(old)  # the second run moved the market
    assert new == sorted(set(new)) and new[-1] < second["next_sequence"]


def test_an_account_cannot_move_to_another_platform(sandbox_dir: Path) -> None:
    """`accounts add` again for a Facebook page's id, as LinkedIn: its posts' ids are
    Facebook's, and LinkedIn would answer their DELETEs 404, read as "already gone" while the
    posts stay up. Refused, exit 2, naming the platform, and nothing changes."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0  # the sandbox's users
    env = {"FB_TOKEN": "sandbox-agent1-facebook-token", "LI_TOKEN": "a-linkedin-token"}
    account = ("accounts", "add", "--id", "my-page", "--user", "sandbox-agent-1")
    added = mls_sync(
        *account, "--platform", "facebook", "--token-env", "FB_TOKEN", cwd=sandbox_dir, env=env
    )
    assert added.returncode == 0, added.stderr

    moved = mls_sync(
        *account, "--platform", "linkedin", "--token-env", "LI_TOKEN", cwd=sandbox_dir, env=env
    )

    assert moved.returncode == 2, moved.stderr
    assert "facebook" in moved.stderr and "my-page" in moved.stderr
    shown = mls_sync("accounts", "show", "my-page", "--json", cwd=sandbox_dir)
    assert json.loads(shown.stdout)["platform"] == "facebook"
