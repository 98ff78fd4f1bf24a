"""Wakes whoever waits for the event log to grow: long-polling readers of /v1/events and the
outbound workers.

One task looks at the last event id a few times a second, on the daemon's read-only
connection (one indexed lookup, beside the writer rather than behind it), and wakes every
waiter when it moves. Polling, not a hook on the writer: events are also written by other
processes (a CLI command on this machine), and they must wake the daemon's readers too.
"""

from __future__ import annotations

import anyio
import structlog

from daemon.store import events
from daemon.store.database import Database
from daemon.store.errors import StoreError

# How often the last id is read: the feed's and the deliveries' added lag is at most this.
WATCH_SECONDS = 0.1
FAILED_READ_SECONDS = 1.0  # after a failed read, so that a lasting error logs once a second

log = structlog.get_logger("mls_sync.events")


class EventWatch:
    def __init__(self, db: Database, interval: float = WATCH_SECONDS) -> None:
        self._db = db
        self._interval = interval
        self.latest = 0
        self._moved = anyio.Event()
        self.stopped = False

    async def run(self) -> None:
        """Until cancelled. A read that fails is tried again at the next look: the daemon
        goes on (its waiters wait a little longer)."""
        while True:
            try:
                latest = await events.last_id(self._db)
            except StoreError as exc:
                log.warning("event_watch_read_failed", error=str(exc))
                await anyio.sleep(FAILED_READ_SECONDS)
                continue
            if latest != self.latest:
                self.latest = latest
                self._moved.set()
                self._moved = anyio.Event()
            await anyio.sleep(self._interval)

    async def wait_after(self, event_id: int, seconds: float) -> bool:
        """Returns once an event after `event_id` exists or after `seconds`; at once, with
        False, when the daemon stops (waiting is over for good)."""
        with anyio.move_on_after(seconds):
            while self.latest <= event_id and not self.stopped:
                await self._moved.wait()
        return not self.stopped

    def stop(self) -> None:
        """The daemon stops: every waiter returns now, so a long poll gets its answer before
        the HTTP server closes (instead of being cut off)."""
        self.stopped = True
        self._moved.set()
