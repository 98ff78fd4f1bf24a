"""What the reliability tests share beyond tests/conftest.py: a sandbox MLS with a runtime for
hypothesis examples."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import pytest

from daemon.composition import Runtime, open_runtime
from daemon.encryption import generate_key
from daemon.sandbox.faults import Fault
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.serving import serving
from daemon.sync.engine import RunReport
from tests.helpers import STATIC_TOKEN, add_connection, make_settings, track


@dataclass
class World:
    portal: anyio.from_thread.BlockingPortal
    rt: Runtime
    mls: SandboxMls
    url: str
    ids: Iterator[int]

    async def add_connection(
        self, letter: str, keys: list[str], status: str | None = None, **fields: Any
    ) -> tuple[str, str]:
        """A connection of the example's own (`{letter}{n}`), tracking `keys` as the listings
        `{LETTER}{n}-{key}`; returns its id and that prefix."""
        n = next(self.ids)
        cid, prefix = f"{letter}{n}", f"{letter.upper()}{n}-"
        await add_connection(self.rt, self.url, cid, **fields)
        await track(self.rt, cid, keys, status=status, prefix=prefix)
        return cid, prefix

    async def sync_answered_by(self, cid: str, answer: Fault) -> RunReport:
        """Syncs `cid` while the MLS answers with `answer`, which is gone afterwards."""
        self.mls.faults.clear()
        self.mls.faults.add(answer)
        try:
            return await self.rt.engine.sync_connection(cid)
        finally:
            self.mls.faults.clear()


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
