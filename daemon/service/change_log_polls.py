"""Events-mode connections read their MLS change log between cycles, each on its own
interval (`poll_seconds`), so that a sale shows in a minute rather than at the next cycle
(docs/mls-reso.md "The change log").

A poll that finds nothing is one request and leaves no run in the history; one that finds
events is a sync of its connection, a run like any other (trigger `poll`). The 15-minute cycle
still syncs every connection, so a poll that fails, or a daemon that stopped polling, delays
a change but never loses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import structlog

from daemon.enums import QueryMode
from daemon.store import connections
from daemon.store.database import Database
from daemon.store.records import ConnectionRow
from daemon.sync.engine import PollOutcome

log = structlog.get_logger("mls_sync.change_log_polls")

# How often the list of events-mode connections is read: a connection added, paused or given
# another interval is taken into account within this time.
TICK_SECONDS = 1.0


class PollingEngine(Protocol):
    async def poll_change_log(self, row: ConnectionRow) -> PollOutcome: ...


@dataclass
class LastPoll:
    """A connection's last poll, for /status: when it ended (Unix time) and how."""

    at: float
    outcome: str
    run_id: int | None = None


class ChangeLogPolls:
    def __init__(
        self,
        db: Database,
        engine: PollingEngine,
        on_poll: Callable[[PollOutcome], None] = lambda result: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.engine = engine
        self.on_poll = on_poll  # each poll's outcome: for the metrics, and /status
        self.clock = clock
        self.next_due: dict[str, float] = {}  # connection id -> monotonic time
        self.last: dict[str, LastPoll] = {}
        self.polling: set[str] = set()
        self.wanted: set[str] = set()  # pushed to: polled now, not when due
        self._wake = anyio.Event()
        self.stopping = False
        self._idle = anyio.Event()
        self._idle.set()

    async def run(self) -> None:
        """Starts each connection's poll when it is due; returns once stopped."""
        async with anyio.create_task_group() as tg:
            while not self.stopping:
                try:
                    rows = await connections.active_in_mode(self.db, QueryMode.EVENTS)
                except Exception:  # the database, say: the next tick tries again
                    log.exception("change_log_polls_not_listed")
                    rows = []
                self._start_due(tg, rows)
                with anyio.move_on_after(TICK_SECONDS):
                    await self._wake.wait()
                self._wake = anyio.Event()
            # The polls under way (syncs) end in the task group: `stop` gave them the grace.

    def _start_due(self, tg: anyio.abc.TaskGroup, rows: list[ConnectionRow]) -> None:
        now = self.clock()
        listed = {row.id for row in rows}
        for gone in set(self.next_due) - listed:  # removed, paused, another mode
            del self.next_due[gone]
        for row in rows:
            if row.id not in self.next_due:
                # First seen (at start, added, resumed): polled at once, so that pushed events
                # queued meanwhile (before a crash, while it was paused) wait no longer. While
                # the cycle at start holds the connection, the poll is `busy` and asks again.
                self.next_due[row.id] = now
            due = self.next_due[row.id]
            if (now >= due or row.id in self.wanted) and row.id not in self.polling:
                self.wanted.discard(row.id)
                self.polling.add(row.id)
                self._idle = anyio.Event()
                tg.start_soon(self._poll, row)

    async def _poll(self, row: ConnectionRow) -> None:
        try:
            with structlog.contextvars.bound_contextvars(connection_id=row.id):
                result = await self.engine.poll_change_log(row)
            run_id = result.report.run.id if result.report else None
            self.last[row.id] = LastPoll(time.time(), result.outcome, run_id)
            if result.outcome == "busy" or result.more_pushed:
                self.wanted.add(row.id)  # pushed events may wait: asked again at the next tick
            self.on_poll(result)
        except Exception:  # a bug: logged, and the connection is polled again next interval
            log.exception("change_log_poll_crashed", connection_id=row.id)
            self.last[row.id] = LastPoll(time.time(), "crashed")
        finally:
            self.next_due[row.id] = self.clock() + row.poll_seconds
            self.polling.discard(row.id)
            if not self.polling:
                self._idle.set()

    def pushed(self, connection_id: str) -> None:
        """The MLS pushed events to the connection (queued): apply them now."""
        self.wanted.add(connection_id)
        self._wake.set()

    def next_poll_in(self, connection_id: str) -> float | None:
        """Seconds until the connection's next poll (0 when one is under way or overdue)."""
        due = self.next_due.get(connection_id)
        return None if due is None else max(0.0, due - self.clock())

    async def stop(self, grace: float) -> None:
        """Starts no new poll; lets the running ones (syncs) finish within `grace`."""
        self.stopping = True
        with anyio.move_on_after(grace):
            await self._idle.wait()
