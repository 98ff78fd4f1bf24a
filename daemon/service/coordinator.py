"""Deciding when a cycle runs (invariant 3). APScheduler is only the clock.

Every trigger (the timer, SIGUSR1, POST /v1/sync) lands here. One cycle runs at a time;
triggers that arrive while it runs fold into exactly one follow-up cycle: never dropped, never
overlapping. (APScheduler would drop a run while one is in flight: docs/runtime.md.)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import anyio
import structlog

from daemon.failures import log_failure
from daemon.sync.check_tiers import SCHEDULED_TRIGGERS
from daemon.sync.cycle_slots import SHARED_TRIGGERS
from daemon.sync.engine import RunReport

log = structlog.get_logger("mls_sync.coordinator")

RECENT_REPORTS = 20
STOPPED_BEFORE_IT_BEGAN = "the daemon stopped before this cycle began"
ENDED_BEFORE_ITS_RUN = (
    "the cycle did not end its run (the daemon's log says why: cycle_crashed, or "
    "cycle_database_error)"
)


@dataclass
class Progress:
    """The running cycle, for /status."""

    trigger: str
    started_monotonic: float
    started_at: float = field(default_factory=time.time)  # Unix time, for /metrics
    connections: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (done, total)
    # Kept as the connections report, so /status never sums a thousand entries per answer.
    listings_done: int = 0
    listings_total: int = 0
    connections_finished: int = 0

    def update(self, connection_id: str, done: int, total: int) -> None:
        was = self.connections.get(connection_id)
        if was is not None:
            self.listings_done -= was[0]
            self.listings_total -= was[1]
            self.connections_finished -= int(was[0] >= was[1])
        self.connections[connection_id] = (done, total)
        self.listings_done += done
        self.listings_total += total
        self.connections_finished += int(done >= total)


class CycleEngine(Protocol):
    """What the coordinator asks of the sync engine (SyncEngine is the one that runs)."""

    on_progress: Callable[[str, int, int], None]

    async def sync_all(self, trigger: str, run_id: int | None = None) -> RunReport: ...

    async def anything_due(self, trigger: str) -> bool: ...

    slot_offset: int
    # Now by the database's clock, which the slots go by (daemon/store/database.py).
    clock: Callable[[], datetime]

    async def reserve_run(self, trigger: str) -> int: ...

    async def abandon_run(self, run_id: int, reason: str) -> None: ...


class Coordinator:
    def __init__(
        self,
        engine: CycleEngine,
        on_report: Callable[[RunReport, float], Awaitable[None]] | None = None,
        before_cycle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.on_report = on_report
        self.before_cycle = before_cycle
        self.pending: str | None = None
        self.pending_run: int | None = None  # the run the pending cycle reports under, if asked
        self._reserving = anyio.Lock()
        self.running: Progress | None = None
        self.stopping = False
        self.reports: deque[RunReport] = deque(maxlen=RECENT_REPORTS)
        self.last_completed_monotonic: float | None = None
        self.cycles = 0
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._scope: anyio.CancelScope | None = None
        engine.on_progress = self._progress

    def trigger(self, source: str) -> str:
        """Asks for a full cycle. Returns "started", "queued" (folded into the follow-up of
        the running cycle) or "refused" (shutting down)."""
        if self.stopping:
            return "refused"
        outcome = "queued" if self.running is not None or self.pending is not None else "started"
        # A clock's trigger (its cycle, a catch-up) never takes the place of another one.
        if self.pending is None or (
            self.pending in SCHEDULED_TRIGGERS and source not in SHARED_TRIGGERS
        ):
            # A cycle someone asked for asks every listing; the clock's asks only the due
            # ones (docs/mls-reso.md "Check tiers"): the folded cycle does what was asked.
            self.pending = source
        self._wake.set()
        log.info("sync_triggered", source=source, outcome=outcome)
        return outcome

    async def request(self, source: str) -> tuple[str, int | None]:
        """`trigger`, and the id of the run that will report the cycle it asked for (the
        pending one, reserved now if need be), so the caller can follow it."""
        async with self._reserving:
            if self.stopping:
                return "refused", None
            if self.pending_run is None:
                self.pending_run = await self.engine.reserve_run(source)
            # No await from here until the loop takes the pending cycle: it takes both.
            return self.trigger(source), self.pending_run

    async def run(self) -> None:
        """The loop: waits for a trigger, runs a cycle, runs the follow-up if one is due."""
        while not self.stopping:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self.pending is not None and not self.stopping:
                # Taken with the run reserved for it: a reservation under way finishes first,
                # so a cycle never starts while the run asked for it is being made.
                async with self._reserving:
                    source, self.pending = self.pending, None
                    run_id, self.pending_run = self.pending_run, None
                await self._cycle(source, run_id)

    async def _cycle(self, source: str, run_id: int | None = None) -> None:
        self._idle = anyio.Event()
        self.running = Progress(source, time.monotonic())
        started = time.monotonic()
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self.before_cycle is not None:
                    await self.before_cycle()
                report = await self.engine.sync_all(source, run_id)
                self.reports.appendleft(report)
                self.last_completed_monotonic = time.monotonic()
                self.cycles += 1
                if self.on_report is not None:
                    await self.on_report(report, time.monotonic() - started)
            if scope.cancelled_caught:
                log.warning("cycle_cancelled", source=source)
        except Exception as exc:
            # The engine records its own failures and ended the run as far as it could: keep
            # the daemon alive and let the next trigger try again.
            log_failure(log, exc, "cycle_crashed", "cycle_database_error", source=source)
        finally:
            if run_id is not None:  # a run asked for is never left `running`
                with anyio.CancelScope(shield=True):
                    await self._abandon(run_id, ENDED_BEFORE_ITS_RUN)
            self.running = None
            self._scope = None
            self._idle.set()

    async def stop(self, grace: float) -> None:
        """Takes no new triggers; lets the running cycle finish within `grace`, then cancels
        it. What it committed stays committed; the next start carries on from there."""
        self.stopping = True
        self.pending = None
        self._wake.set()
        async with self._reserving:
            reserved, self.pending_run = self.pending_run, None
        if reserved is not None:
            await self._abandon(reserved, STOPPED_BEFORE_IT_BEGAN)
        with anyio.move_on_after(grace):
            await self._idle.wait()
        if self._scope is not None:
            log.warning("cycle_cancelled_at_shutdown", grace_seconds=grace)
            self._scope.cancel()
            await self._idle.wait()

    async def _abandon(self, run_id: int, reason: str) -> None:
        try:
            await self.engine.abandon_run(run_id, reason)
        except Exception as exc:  # the outage the run met, say; the next start ends it
            log_failure(log, exc, "reserved_run_not_ended", "reserved_run_not_ended", run_id=run_id)

    def _progress(self, connection_id: str, done: int, total: int) -> None:
        if self.running is not None:
            self.running.update(connection_id, done, total)
