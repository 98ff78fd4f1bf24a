"""Shared fixtures: real parts only. A real SQLite file in a temp dir, the sandbox MLS served
over real HTTP on 127.0.0.1, and the same runtime the CLI uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.composition import Runtime, open_runtime
from daemon.config import Settings
from daemon.encryption import generate_key
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.sandbox.platforms_server import SandboxPlatforms, build_platforms_app
from daemon.serving import serving
from tests.e2e.daemon_process import DaemonConfig
from tests.helpers import STATIC_TOKEN, Live, Mls, Platforms, make_settings, open_live


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def secret_key() -> str:
    return generate_key()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fast retries, so fault tests take milliseconds, not the production backoff."""
    return make_settings(tmp_path)


@pytest.fixture
async def mls() -> AsyncIterator[Mls]:
    sandbox = SandboxMls(static_tokens={STATIC_TOKEN})
    sandbox.add_client("client-1", "client-secret-1")
    async with serving(build_mls_app(sandbox)) as url:
        yield sandbox, url


@pytest.fixture
async def runtime(settings: Settings, secret_key: str) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": secret_key}) as rt:
        yield rt


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    state = SandboxPlatforms()
    async with serving(build_platforms_app(state)) as url:
        yield state, url


@pytest.fixture
async def live(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms
) -> AsyncIterator[Live]:
    """The runtime with the sandbox MLS and the sandbox platforms, all over loopback HTTP."""
    async with open_live(tmp_path, secret_key, mls, platforms) as ready:
        yield ready


@pytest.fixture
def daemon_config(tmp_path: Path, secret_key: str, platforms: Platforms) -> DaemonConfig:
    """config.toml for `mls-sync run` in tmp_path on a free port, platforms the sandbox's."""
    return DaemonConfig.write(tmp_path, platforms[1], secret_key)
