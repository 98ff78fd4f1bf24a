"""Where the command line finds its configuration and its state, as an operator meets it: a real
subprocess, real files, real exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.encryption import generate_key
from tests.integration.test_cli import mls_sync

EX_CANTCREAT = 73  # sysexits.h: a (user) output file cannot be created

SANDBOX_OFF = "[sandbox]\nenabled = false\n"
# Nothing here may bind the daemon's real port, should a command get that far.
ANY_PORT = {"MLS_SYNC_DAEMON__HTTP_PORT": "0"}


def _state_blocked_by_a_file(folder: Path, config: str) -> Path:
    """A config whose [database] path lies under a plain file: its folder cannot be made."""
    (folder / "state").write_text("a file where the state folder should be\n")
    (folder / "config.toml").write_text(f'[database]\npath = "state/mls-sync.db"\n{config}')
    return folder / "state" / "mls-sync.db"


@pytest.mark.parametrize(
    "command",
    [("sync",), ("run",), ("history",), ("connections", "list"), ("listings", "list")],
    ids=lambda c: " ".join(c),
)
def test_a_state_path_that_cannot_be_created_is_one_line_and_exit_73(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Every command that opens the database says which path and what to do, not a traceback."""
    db_path = _state_blocked_by_a_file(tmp_path, SANDBOX_OFF)
    env = {"MLS_SYNC_SECRET_KEY": generate_key(), **ANY_PORT}
    result = mls_sync(*command, cwd=tmp_path, env=env)
    assert result.returncode == EX_CANTCREAT, result.stderr
    assert result.stderr.splitlines() == [
        f"mls-sync: cannot create {db_path}: {tmp_path / 'state'} is a file, not a folder; "
        "set [database] path (or MLS_SYNC_DATABASE__PATH) to a file in a folder this user "
        "can write"
    ]
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["sync", "run"])
def test_the_sandbox_with_a_state_path_that_cannot_be_created_exits_73(
    tmp_path: Path, command: str
) -> None:
    """The sandbox keeps its key and market beside the database: the same one line."""
    _state_blocked_by_a_file(tmp_path, "[sandbox]\nenabled = true\n")
    result = mls_sync(command, cwd=tmp_path, env=ANY_PORT)
    assert result.returncode == EX_CANTCREAT, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"mls-sync: cannot create {tmp_path / 'state'}")
    assert f"{tmp_path / 'state'} is a file, not a folder; set [database] path" in line


def test_a_database_path_that_is_a_folder_is_one_line_and_exit_73(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "config.toml").write_text(f'[database]\npath = "state"\n{SANDBOX_OFF}')
    result = mls_sync("history", cwd=tmp_path, env={"MLS_SYNC_SECRET_KEY": generate_key()})
    assert result.returncode == EX_CANTCREAT, result.stderr
    assert result.stderr.splitlines() == [
        f"mls-sync: cannot create {tmp_path / 'state'}: it is a folder; set [database] path "
        "(or MLS_SYNC_DATABASE__PATH) to a file in a folder this user can write"
    ]
