"""A write that must go through on the way out (a run's end, a lease freed): tried again while
a database error lets up (another process holding the write lock, say), for a while, and never
cut short by a cancel. Given up with a log line after that: the error must not replace the one
(or the cancel) the caller is already leaving with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog

from daemon.store.errors import StoreError

log = structlog.get_logger("mls_sync.store")

SECONDS = 10.0
PAUSE = 0.25


async def until_written(
    write: Callable[[], Awaitable[None]], what: str, seconds: float = SECONDS
) -> bool:
    """Runs `write` until it raises no StoreError, for up to `seconds`, shielded from
    cancellation. True when it went through."""
    deadline = anyio.current_time() + seconds
    with anyio.CancelScope(shield=True):
        while True:
            try:
                await write()
                return True
            except StoreError as exc:
                if anyio.current_time() >= deadline:
                    log.error("write_given_up", what=what, error=str(exc))
                    return False
                # Info, not a warning: a passing lock is normal; giving up is the error.
                log.info("write_not_done_yet", what=what, error=str(exc))
                await anyio.sleep(PAUSE)
    return False  # not reached: the shielded scope is left only by the returns above
