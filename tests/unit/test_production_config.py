"""systemd/config.toml, the production example: it loads, runs no sandbox, keeps its state where
the unit gives it room, and is installed where the unit and the CLI look for it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from daemon.config import SYSTEM_CONFIG_PATH, Settings, load_settings
from tests.helpers import undocumented_keys
from tests.paths import REPO

SYSTEMD = REPO / "systemd"
EXAMPLE = SYSTEMD / "config.toml"


def _unit(key: str) -> str:
    """The value of `key=` in the shipped unit (each key the tests read appears once)."""
    lines = (SYSTEMD / "mls-sync.service").read_text().splitlines()
    [value] = [line.split("=", 1)[1] for line in lines if line.startswith(f"{key}=")]
    return value


def _example() -> Settings:
    return load_settings(EXAMPLE, {})


def test_the_production_example_loads_with_the_sandbox_off() -> None:
    assert _example().sandbox.enabled is False


def test_the_production_database_lives_in_the_units_state_directory() -> None:
    """StateDirectory=mls-sync is the one writable place the hardened unit has."""
    written = tomllib.loads(EXAMPLE.read_text())["database"]["path"]
    assert Path(written).is_absolute()  # not taken from the config file's folder
    assert _example().database.path.parent == Path("/var/lib") / _unit("StateDirectory")


def test_the_unit_reads_the_example_where_the_cli_finds_it_without_config() -> None:
    """Installed as /etc/mls-sync/config.toml, the file both the daemon and a bare
    `mls-sync history` read."""
    assert f"--config {SYSTEM_CONFIG_PATH}" in _unit("ExecStart")


def test_the_production_example_stops_within_the_units_stop_timeout() -> None:
    """The grace for a running cycle, then the last writes, before systemd's SIGKILL."""
    timeout = float(_unit("TimeoutStopSec"))
    assert _example().daemon.shutdown_grace_seconds < timeout / 2


def test_the_production_example_serves_loopback_only_and_documents_every_key() -> None:
    assert _example().daemon.http_host == "127.0.0.1"
    assert undocumented_keys(EXAMPLE.read_text()) == []
