"""Where the command line finds its configuration and its state, as an operator meets it: a real
subprocess, real files, real exit codes."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
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


def _a_folder(path: Path) -> None:
    path.mkdir()


def _a_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


@pytest.mark.parametrize(
    ("make", "what"), [(_a_folder, "a folder"), (_a_socket, "not a regular file")]
)
def test_a_database_path_that_is_not_a_file_is_one_line_and_exit_73(
    tmp_path: Path, make: Callable[[Path], None], what: str
) -> None:
    """SQLite would say only "unable to open database file" (and its thread, racing the exit,
    a traceback)."""
    make(tmp_path / "db")
    (tmp_path / "config.toml").write_text(f'[database]\npath = "db"\n{SANDBOX_OFF}')
    result = mls_sync("history", cwd=tmp_path, env={"MLS_SYNC_SECRET_KEY": generate_key()})
    assert result.returncode == EX_CANTCREAT, result.stderr
    assert result.stderr.splitlines() == [
        f"mls-sync: cannot create {tmp_path / 'db'}: it is {what}; set [database] path "
        "(or MLS_SYNC_DATABASE__PATH) to a file in a folder this user can write"
    ]


SYSTEM_CONFIG = Path("/etc/mls-sync/config.toml")


@pytest.mark.skipif(SYSTEM_CONFIG.exists(), reason=f"{SYSTEM_CONFIG} exists on this machine")
def test_without_any_config_file_a_command_names_the_places_it_looked_and_exits_78(
    tmp_path: Path,
) -> None:
    result = mls_sync("history", cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines() == [
        f"mls-sync: invalid configuration: no config file: MLS_SYNC_CONFIG is not set, and "
        f"neither {tmp_path / 'config.toml'} nor {SYSTEM_CONFIG} exists; pass --config PATH, "
        "set MLS_SYNC_CONFIG, or copy the shipped config.toml (systemd/config.toml for "
        "production) to one of them"
    ]


def test_config_flag_beats_the_variable_which_beats_the_working_directory(tmp_path: Path) -> None:
    """Each file sets a different interval; check-config shows which one was read."""
    for name, seconds in [("config.toml", 100), ("from-env.toml", 200), ("from-flag.toml", 300)]:
        (tmp_path / name).write_text(f"[sync]\ninterval_seconds = {seconds}\n{SANDBOX_OFF}")
    variable = {"MLS_SYNC_CONFIG": str(tmp_path / "from-env.toml")}
    read = {
        "working directory": mls_sync("check-config", cwd=tmp_path),
        "variable": mls_sync("check-config", cwd=tmp_path, env=variable),
        "flag": mls_sync("check-config", "--config", "from-flag.toml", cwd=tmp_path, env=variable),
    }
    assert {
        source: json.loads(result.stdout)["sync"]["interval_seconds"]
        for source, result in read.items()
    } == {"working directory": 100, "variable": 200, "flag": 300}
