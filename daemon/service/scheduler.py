"""APScheduler 3.11 as the clock: it says "it is time", the coordinator decides what runs.

The job is a coroutine so that AsyncIOScheduler runs it on the event loop (a plain function
would run in a worker thread, where touching the coordinator would be a race).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from daemon.service.coordinator import Coordinator

JOB_ID = "sync"


class Scheduler:
    def __init__(self, coordinator: Coordinator, interval: int, jitter: int) -> None:
        self.coordinator = coordinator
        self.interval = interval
        self.jitter = jitter
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        """Must be called inside the running event loop (3.11 takes get_running_loop())."""
        self.scheduler.add_job(
            self._tick,
            self._trigger(),
            id=JOB_ID,
            # The first cycle runs at start (triggered directly); the clock takes over after.
            next_run_time=datetime.now(UTC) + timedelta(seconds=self.interval),
            # 3.x defaults to one second of grace, which a busy loop can miss: allow a whole
            # interval, and fold missed runs into one (the coordinator coalesces anyway).
            misfire_grace_time=self.interval,
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()

    def reschedule(self, interval: int, jitter: int) -> None:
        self.interval, self.jitter = interval, jitter
        self.scheduler.reschedule_job(JOB_ID, trigger=self._trigger())

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
        return IntervalTrigger(seconds=self.interval, jitter=self.jitter or None, timezone=UTC)

    async def _tick(self) -> None:
        self.coordinator.trigger("schedule")
