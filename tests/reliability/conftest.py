"""What the reliability tests share: a daemon config pointed at the sandbox platforms."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.sandbox.platforms_server import SandboxPlatforms
from tests.e2e.daemon_process import free_port, write_config


@dataclass(frozen=True)
class DaemonConfig:
    path: Path
    port: int


@pytest.fixture
def daemon_config(tmp_path: Path, platforms: tuple[SandboxPlatforms, str]) -> DaemonConfig:
    """config.toml for `mls-sync run` on a free port, sandbox off, platforms on loopback."""
    path = tmp_path / "config.toml"
    port = free_port()
    write_config(path, port, platforms[1])
    return DaemonConfig(path, port)
