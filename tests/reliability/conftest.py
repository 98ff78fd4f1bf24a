"""What the reliability tests share: a daemon config pointed at the sandbox platforms, and a
sandbox MLS with a runtime for hypothesis examples."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

from daemon.composition import Runtime, open_runtime
from daemon.encryption import generate_key
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.sandbox.platforms_server import SandboxPlatforms
from daemon.serving import serving
from tests.e2e.daemon_process import free_port, write_config
from tests.helpers import STATIC_TOKEN, make_settings


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


@dataclass
class World:
    portal: anyio.from_thread.BlockingPortal
    rt: Runtime
    mls: SandboxMls
    url: str
    ids: Iterator[int]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One sandbox MLS and one runtime for all the examples, on an event loop in a thread;
    each example gets a connection and listings of its own."""
    tmp = tmp_path_factory.mktemp("bad-answers")
    settings_ = make_settings(tmp, MLS_SYNC_MLS__MAX_ATTEMPTS="2")
    mls = SandboxMls(static_tokens={STATIC_TOKEN})
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serving(build_mls_app(mls))) as url,
        portal.wrap_async_context_manager(
            open_runtime(settings_, {"MLS_SYNC_SECRET_KEY": generate_key()})
        ) as rt,
    ):
        yield World(portal, rt, mls, url, itertools.count())
