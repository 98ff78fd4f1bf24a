"""Events-mode connections between cycles (docs/mls-reso.md "Between cycles", "Push"): each
one's change log is read every `poll_seconds`, and the events the MLS pushed are applied as
soon as they are queued, so that a sale shows in seconds or a minute rather than at the next
cycle.

A read of the log that finds nothing is one request and leaves no run in the history; one
that finds events is a sync of its connection, a run like any other (trigger `poll`).
Applying pushed events is a run of its own (trigger `push`). The two are kept apart: pushes
never put off the log's reads (which catch a push lost on the way), and pushed events that
cannot be applied are tried again at the connection's next read of the log, not at once.
A connection a sync holds (the cycle's, say) is asked again at the next tick; a cycle that
comes to a connection one of these runs holds waits for it (daemon/sync/engine.py). The
15-minute cycle still syncs every connection, so a failed read, or a daemon that stopped
polling, delays a change but never loses it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import structlog

from daemon.enums import QueryMode
from daemon.failures import log_failure
from daemon.store import connections
from daemon.store.database import Database
from daemon.store.errors import StoreError
from daemon.store.records import ConnectionRow
from daemon.sync.engine import PollOutcome

log = structlog.get_logger("mls_sync.change_log_polls")

# How often the list of events-mode connections is read: a connection added, paused or given
# another interval is taken into account within this time.
TICK_SECONDS = 1.0
MIN_WAIT_SECONDS = 0.01  # between two looks, however overdue a read is


class PollingEngine(Protocol):
    async def poll_change_log(self, row: ConnectionRow) -> PollOutcome: ...

    async def apply_pushes(self, row: ConnectionRow, retry_failed: bool) -> PollOutcome: ...


@dataclass
class LastPoll:
    """A connection's last read of its log or apply of pushes, for /status: when it ended
    (Unix time) and how."""

    at: float
    outcome: str
    run_id: int | None = None


def _failed(exc: Exception, what: str, connection_id: str) -> str:
    """Logs a read of the log or an apply of pushes that raised, and gives the outcome /status
    shows for it."""
    crashed, outage = f"{what}_crashed", f"{what}_database_error"
    return (
        "database_error"
        if log_failure(log, exc, crashed, outage, connection_id=connection_id)
        else "crashed"
    )


async def _nothing(result: PollOutcome) -> None:
    return None


class ChangeLogPolls:
    def __init__(
        self,
        db: Database,
        engine: PollingEngine,
        on_poll: Callable[[PollOutcome], Awaitable[None]] = _nothing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.engine = engine
        self.on_poll = on_poll  # each outcome: for the metrics
        self.clock = clock
        self.next_due: dict[str, float] = {}  # connection id -> monotonic time of its read
        self.last: dict[str, LastPoll] = {}
        self.polling: set[str] = set()
        self.wanted: set[str] = set()  # pushed to (or first seen): its queue is looked at now
        # Pushed to while at work: looked at again as soon as that work ends, not a tick on.
        self.pushed_during: set[str] = set()
        self.stopping = False
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()

    async def run(self) -> None:
        """Starts each connection's work when it is due; returns once stopped."""
        rows: list[ConnectionRow] | None = None
        listed_at = 0.0
        async with anyio.create_task_group() as tg:
            while not self.stopping:
                # Listed once a tick, not at each wake (a push, a read coming due).
                if rows is None or self.clock() - listed_at >= TICK_SECONDS:
                    try:
                        rows = await connections.active_in_mode(self.db, QueryMode.EVENTS)
                        listed_at = self.clock()
                    except StoreError as exc:  # the next tick tries again, schedules kept
                        log.warning("change_log_polls_not_listed", error=str(exc))
                    except Exception:  # a bug: logged whole; the next tick tries again
                        log.exception("change_log_polls_not_listed")
                if rows is not None and not self.stopping:
                    self._start_due(tg, rows)
                with anyio.move_on_after(self._until_next()):
                    await self._wake.wait()
                self._wake = anyio.Event()
            # The work under way (runs) ends in the task group: `stop` gave it the grace.

    def _start_due(self, tg: anyio.abc.TaskGroup, rows: list[ConnectionRow]) -> None:
        now = self.clock()
        listed = {row.id for row in rows}
        for gone in set(self.next_due) - listed:  # removed, paused, another mode
            del self.next_due[gone]
            self.last.pop(gone, None)
            self.wanted.discard(gone)
        for row in rows:
            if row.id not in self.next_due:
                # First seen (at start, added, resumed): its read is due a whole interval
                # on (the cycle reads it first), but pushed events queued meanwhile (before a
                # crash, while it was paused) are looked at now.
                self.next_due[row.id] = now + row.poll_seconds
                self.wanted.add(row.id)
            read_log = now >= self.next_due[row.id]
            if (read_log or row.id in self.wanted) and row.id not in self.polling:
                self.wanted.discard(row.id)
                self.polling.add(row.id)
                self._idle = anyio.Event()
                tg.start_soon(self._work, row, read_log)

    async def _work(self, row: ConnectionRow, read_log: bool) -> None:
        """Applies what was pushed, if anything waits; then reads the log, when due. Each
        on its own: a failure of one never keeps the other from running."""
        try:
            with structlog.contextvars.bound_contextvars(connection_id=row.id):
                await self._apply_pushes(row, read_log)
                if read_log:
                    await self._read_log(row)
        finally:
            self.polling.discard(row.id)
            if row.id in self.pushed_during:
                self.pushed_during.discard(row.id)
                self._wake.set()
            if not self.polling:
                self._idle.set()

    async def _apply_pushes(self, row: ConnectionRow, read_log: bool) -> None:
        """Events whose listing could not be read before are tried again only with a read
        of the log (once an interval), not with every push."""
        try:
            pushed = await self.engine.apply_pushes(row, retry_failed=read_log)
            if pushed.outcome == "busy" or pushed.more_pushed:
                self.wanted.add(row.id)  # asked again at the next tick
            if pushed.outcome != "none":
                await self._note(row.id, pushed)
        except Exception as exc:  # the next push or read of the log tries again
            self.last[row.id] = LastPoll(time.time(), _failed(exc, "pushed_events_apply", row.id))

    async def _read_log(self, row: ConnectionRow) -> None:
        wait: float = row.poll_seconds
        try:
            read = await self.engine.poll_change_log(row)
            if read.outcome == "busy":
                wait = TICK_SECONDS  # asked again a tick on
            await self._note(row.id, read)
        except Exception as exc:  # the log is read again next interval
            self.last[row.id] = LastPoll(time.time(), _failed(exc, "change_log_poll", row.id))
        finally:
            self.next_due[row.id] = self.clock() + wait

    def _until_next(self) -> float:
        """Until the next read of a log is due (of a connection not at work now), a tick at
        most: a read starts on time."""
        due = [at for cid, at in self.next_due.items() if cid not in self.polling]
        if not due:
            return TICK_SECONDS
        return min(TICK_SECONDS, max(MIN_WAIT_SECONDS, min(due) - self.clock()))

    async def _note(self, connection_id: str, result: PollOutcome) -> None:
        run_id = result.report.run.id if result.report else None
        self.last[connection_id] = LastPoll(time.time(), result.outcome, run_id)
        await self.on_poll(result)

    def pushed(self, connection_id: str) -> None:
        """The MLS pushed events to the connection (queued): apply them now, or as soon as
        the connection's work under way ends."""
        self.wanted.add(connection_id)
        if connection_id in self.polling:
            self.pushed_during.add(connection_id)
        self._wake.set()

    def next_poll_in(self, connection_id: str) -> float | None:
        """Seconds until the connection's next read of its log (0 when overdue)."""
        due = self.next_due.get(connection_id)
        return None if due is None else max(0.0, due - self.clock())

    async def stop(self, grace: float) -> None:
        """Starts nothing new; lets the runs under way finish within `grace`."""
        self.stopping = True
        self._wake.set()
        with anyio.move_on_after(grace):
            await self._idle.wait()
