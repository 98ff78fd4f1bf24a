"""Opening the runtime for a command that may call out (sync, unpublish).

With [sandbox] enabled, the sandbox MLS and platforms are started first and every URL points
at them, so no such command can reach a real MLS or social platform from a sandbox config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import click

from daemon.config import Settings
from daemon.sandbox.environment import SandboxSession, sandbox_running
from daemon.sync.runtime import Runtime, open_runtime


@asynccontextmanager
async def calling_out(
    settings: Settings,
    on_progress: Callable[[str, int, int], None] = lambda cid, done, total: None,
    before: Callable[[SandboxSession], None] = lambda session: None,
) -> AsyncIterator[Runtime]:
    if not settings.sandbox.enabled:
        async with open_runtime(settings, on_progress=on_progress) as rt:
            yield rt
        return
    async with sandbox_running(settings) as sandbox:
        click.echo(
            f"sandbox MLS at {sandbox.mls_url}, sandbox platforms at {sandbox.platforms_url}"
        )
        before(sandbox)
        async with open_runtime(sandbox.settings_for(settings), on_progress=on_progress) as rt:
            await sandbox.wire(rt.db, rt.require_box())
            yield rt
