"""`mls-sync tokens` as an operator uses it: a real subprocess on a real database file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.ops import tokens
from daemon.ops.tokens import Caller
from daemon.scopes import Scope
from daemon.store.sqlite import SqliteDatabase
from tests.integration.test_cli import mls_sync

pytestmark = pytest.mark.slow


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    return tmp_path


def database_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (folder / "state").glob("mls-sync.db*"))


async def test_a_created_token_is_printed_once_alone_on_stdout_and_works_with_its_scope(
    folder: Path,
) -> None:
    created = mls_sync("tokens", "create", "monitoring", "--scope", "read", cwd=folder)

    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and token.startswith("mls_")
    assert "shown only now" in created.stderr and token not in created.stderr
    db = await SqliteDatabase.open(folder / "state" / "mls-sync.db")
    try:
        assert await tokens.authenticate(db, None, token) == Caller("monitoring", Scope.READ)
    finally:
        await db.close()
    assert token.encode() not in database_bytes(folder)


def test_the_list_shows_each_token_and_its_state_but_never_a_secret(folder: Path) -> None:
    made = []
    for name, scope in (("monitoring", "read"), ("app", "write"), ("ops", "admin")):
        result = mls_sync("tokens", "create", name, "--scope", scope, cwd=folder)
        assert result.returncode == 0, result.stderr
        made.append(result.stdout.strip())
    assert mls_sync("tokens", "revoke", "app", cwd=folder).returncode == 0

    table = mls_sync("tokens", "list", cwd=folder)
    as_json = mls_sync("tokens", "list", "--json", cwd=folder)

    assert table.returncode == 0 and as_json.returncode == 0
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["NAME", "SCOPE", "CREATED_AT", "LAST_USED_AT", "REVOKED_AT"]
    names_and_scopes = [line.split()[:2] for line in lines]
    assert names_and_scopes == [["app", "write"], ["monitoring", "read"], ["ops", "admin"]]
    listed = {t["name"]: t for t in json.loads(as_json.stdout)}
    assert listed["app"]["revoked_at"] and not listed["ops"]["revoked_at"]
    for token in made:
        shown = table.stdout + as_json.stdout + table.stderr + as_json.stderr
        assert token not in shown and tokens.token_sha256(token) not in shown


def test_create_with_json_gives_the_token_and_its_record(folder: Path) -> None:
    result = mls_sync("tokens", "create", "ci", "--scope", "write", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["name"] == "ci" and record["scope"] == "write"
    assert record["token"].startswith("mls_") and record["revoked_at"] is None


def test_revoke_says_what_it_did_and_refuses_an_unknown_or_revoked_name(folder: Path) -> None:
    assert mls_sync("tokens", "create", "ci", "--scope", "read", cwd=folder).returncode == 0

    revoked = mls_sync("tokens", "revoke", "ci", cwd=folder)
    again = mls_sync("tokens", "revoke", "ci", cwd=folder)
    unknown = mls_sync("tokens", "revoke", "nobody", cwd=folder)

    assert revoked.returncode == 0 and revoked.stdout == "token ci revoked\n"
    assert again.returncode == 2 and "token 'ci' was revoked already" in again.stderr
    assert unknown.returncode == 1 and "no token has this name" in unknown.stderr
    assert "Traceback" not in again.stderr + unknown.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("ci", "--scope", "root"), "'root' is not one of 'read', 'write', 'admin'"),
        (("ci",), "Missing option '--scope'"),
        (("c i", "--scope", "read"), "name: 1 to 128 letters, digits and"),
        (("taken", "--scope", "read"), "a token with this name exists already"),
    ],
)
def test_a_token_that_cannot_be_made_is_refused_with_exit_2_and_nothing_is_printed(
    folder: Path, args: tuple[str, ...], said: str
) -> None:
    assert mls_sync("tokens", "create", "taken", "--scope", "admin", cwd=folder).returncode == 0
    result = mls_sync("tokens", "create", *args, cwd=folder)
    assert result.returncode == 2 and said in result.stderr, result.stderr
    assert result.stdout == ""
    listed = json.loads(mls_sync("tokens", "list", "--json", cwd=folder).stdout)
    assert [(t["name"], t["scope"]) for t in listed] == [("taken", "admin")]
