"""Fixtures of the end-to-end tests that several files use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.daemon_process import Daemon, DaemonConfig
from tests.helpers import Platforms

SANDBOX_ON = """[sandbox]
enabled = true
interval_seconds = 1
agents = 2
connections = 4
listings = 120
moves_per_cycle = 8
"""


def sandbox_config(tmp_path: Path, secret_key: str, platforms_url: str) -> DaemonConfig:
    """A config for `mls-sync run` with the embedded sandbox, a cycle every second (the
    sandbox points the platforms at its own servers: `platforms_url` goes unused)."""
    config = DaemonConfig.write(tmp_path, platforms_url, secret_key)
    text = config.path.read_text()
    config.path.write_text(text.replace("[sandbox]\nenabled = false\n", SANDBOX_ON))
    return config


@pytest.fixture
async def sandbox_daemon(
    tmp_path: Path, secret_key: str, platforms: Platforms
) -> AsyncIterator[Daemon]:
    """`mls-sync run` with the embedded sandbox, a cycle every second."""
    daemon = sandbox_config(tmp_path, secret_key, platforms[1]).start()
    try:
        await daemon.wait_notify("READY=1", timeout=60)
        yield daemon
    finally:
        daemon.stop()
