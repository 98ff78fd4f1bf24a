"""What the reliability tests share beyond tests/conftest.py: a sandbox MLS with a runtime for
hypothesis examples."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import anyio.from_thread
import pytest

from daemon.encryption import generate_key
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.serving import serving
from daemon.sync.runtime import Runtime, open_runtime
from tests.helpers import STATIC_TOKEN, make_settings


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
