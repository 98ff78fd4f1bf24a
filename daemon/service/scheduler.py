"""APScheduler 3.11 as the clock: it says "it is time", the coordinator decides what runs.

The jobs are coroutines so that AsyncIOScheduler runs them on the event loop (a plain
function would run in a worker thread, where touching the coordinator would be a race).

Two jobs (daemon/sync/cycle_slots.py says why):
- **The cycle**, once per slot: slots are counted from the Unix epoch plus the database's own
  offset, so every daemon that shares the database fires in the same slot; each waits a
  random part of the jitter first.
- **The catch-up**, several times a slot: a cycle of what no process has synced in this
  slot (a connection whose daemon died, one added or resumed meanwhile). It asks the
  database first, and starts nothing when nothing is due, nor while the slot's own cycles
  may still be waiting out their jitter.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import anyio
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from daemon.service.coordinator import Coordinator
from daemon.store.errors import StoreError
from daemon.sync.cycle_slots import first_slot
from daemon.timestamps import utcnow

JOB_ID = "sync"
CATCH_UP_ID = "catch_up"

log = structlog.get_logger("mls_sync.scheduler")


class Scheduler:
    def __init__(self, coordinator: Coordinator, interval: int, jitter: int, catch_up: int) -> None:
        self.coordinator = coordinator
        self.interval = interval
        self.jitter = jitter
        self.catch_up = catch_up
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        """Must be called inside the running event loop (3.11 takes get_running_loop())."""
        # The first cycle runs at start (triggered directly); the clock takes over at the
        # next slot. 3.x defaults to one second of grace, which a busy loop can miss: allow a
        # whole interval, and fold missed runs into one (the coordinator coalesces anyway).
        self.scheduler.add_job(
            self._tick,
            self._trigger(),
            id=JOB_ID,
            misfire_grace_time=self.interval,
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.add_job(
            self._catch_up,
            IntervalTrigger(seconds=self.catch_up, timezone=UTC),
            id=CATCH_UP_ID,
            misfire_grace_time=self.catch_up,
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()

    def reschedule(self, interval: int, jitter: int, catch_up: int) -> None:
        self.interval, self.jitter, self.catch_up = interval, jitter, catch_up
        self.scheduler.reschedule_job(JOB_ID, trigger=self._trigger())
        self.scheduler.reschedule_job(
            CATCH_UP_ID, trigger=IntervalTrigger(seconds=catch_up, timezone=UTC)
        )

    def next_run(self) -> datetime | None:
        job = self.scheduler.get_job(JOB_ID)
        return job.next_run_time if job is not None else None

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def shutdown(self) -> None:
        """Our own work is stopped first (the coordinator); this only stops the clock."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _trigger(self) -> IntervalTrigger:
        # At the slots' starts exactly. The jitter is the tick's own wait, not the trigger's:
        # APScheduler 3 counts each next fire from the last one, jitter included, which
        # would carry the fires away from the slots.
        # The slots are the database's (its clock: daemon/store/database.py), the trigger
        # this machine's: shifted by how far the two clocks differ.
        engine = self.coordinator.engine
        ahead = engine.clock() - utcnow()
        start = first_slot(self.interval, engine.slot_offset) - ahead
        return IntervalTrigger(seconds=self.interval, start_date=start, timezone=UTC)

    async def _tick(self) -> None:
        # Within the slot's first half, so that the fire never lands in the next slot.
        await anyio.sleep(random.uniform(0, min(self.jitter, self.interval // 2)))  # noqa: S311 - spreading, not secrecy
        self.coordinator.trigger("schedule")

    async def _catch_up(self) -> None:
        coordinator = self.coordinator
        if coordinator.running is not None or coordinator.pending is not None:
            return  # a cycle under way, or about to be, takes what is due
        try:
            due = await coordinator.engine.anything_due("catch_up")
        except StoreError as exc:  # the next look tries again
            log.warning("catch_up_not_checked", error=str(exc))
            return
        # Asked again: a cycle may have begun while the database was read.
        if due and coordinator.running is None and coordinator.pending is None:
            coordinator.trigger("catch_up")
