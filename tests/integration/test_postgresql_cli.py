"""`[database] url`: the CLI on a real PostgreSQL server, as an operator meets it (a real
subprocess, real exit codes), and the mistakes it refuses without echoing a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.encryption import generate_key
from tests.integration.test_cli import mls_sync
from tests.postgres_server import PostgresServer

EX_CONFIG = 78
SANDBOX_OFF = "[sandbox]\nenabled = false\n"


def _config(folder: Path, url: str) -> None:
    (folder / "config.toml").write_text(f'[database]\nurl = "{url}"\n{SANDBOX_OFF}')


def _env(**extra: str) -> dict[str, str]:
    # PGPASSWORD (set for the in-process tests) must not stand in for the daemon's own
    # password handling: an empty one is no password at all.
    return {"MLS_SYNC_SECRET_KEY": generate_key(), "PGPASSWORD": "", **extra}


def test_a_url_with_the_password_in_it_is_refused_and_the_password_never_shown(
    tmp_path: Path,
) -> None:
    _config(tmp_path, "postgresql://mls_sync:hunter2-secret@127.0.0.1:5432/mls")
    result = mls_sync("check-config", cwd=tmp_path, env=_env())
    assert result.returncode == EX_CONFIG, result.stderr
    assert "MLS_SYNC_DATABASE_PASSWORD" in result.stderr
    assert "database-password" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_a_url_that_is_not_postgresql_is_refused(tmp_path: Path) -> None:
    _config(tmp_path, "mysql://root@127.0.0.1/mls")
    result = mls_sync("check-config", cwd=tmp_path, env=_env())
    assert result.returncode == EX_CONFIG, result.stderr
    assert "[database] url" in result.stderr and "PostgreSQL URL" in result.stderr
    assert "mysql" not in result.stderr


def test_the_cli_keeps_its_state_in_postgresql_with_the_password_from_the_environment(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.new_database()
    _config(tmp_path, url)
    env = _env(MLS_SYNC_DATABASE_PASSWORD=postgres_server.password)
    added = mls_sync(
        "users", "add", "--id", "agent-7", "--name", "Agent Seven", cwd=tmp_path, env=env
    )
    assert added.returncode == 0, added.stderr

    listed = mls_sync("users", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "agent-7" in listed.stdout
    assert not (tmp_path / "state").exists()  # no SQLite file beside it


def test_the_password_may_come_from_a_systemd_credential(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    _config(tmp_path, postgres_server.new_database())
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "database-password").write_text(postgres_server.password + "\n")
    env = _env(CREDENTIALS_DIRECTORY=str(credentials))
    result = mls_sync("users", "list", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("password", ["", "not-the-password"], ids=["none", "wrong"])
def test_a_missing_or_wrong_database_password_is_one_line_that_says_what_to_check(
    tmp_path: Path, postgres_server: PostgresServer, password: str
) -> None:
    _config(tmp_path, postgres_server.new_database())
    result = mls_sync("users", "list", cwd=tmp_path, env=_env(MLS_SYNC_DATABASE_PASSWORD=password))
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("mls-sync: cannot connect to PostgreSQL")
    assert "MLS_SYNC_DATABASE_PASSWORD" in line
    assert password == "" or password not in line
