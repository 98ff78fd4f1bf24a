"""When cycles run: the coordinator with a fake engine whose cycles the test begins and ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest

from daemon.service.coordinator import Coordinator
from daemon.store.records import RunRow
from daemon.sync.engine import RunReport
from daemon.timestamps import utcnow

NOW = "2026-11-30T00:00:00Z"


@dataclass
class Cycle:
    """One call of `sync_all`: it runs until the test sets `finish` (or cancels it)."""

    trigger: str
    run_id: int | None = None  # the reserved run it reports under, if one was asked for
    finish: anyio.Event = field(default_factory=anyio.Event)
    crash: Exception | None = None
    cancelled: bool = False


class FakeEngine:
    """Stands in for SyncEngine: records each cycle and holds it open until the test ends it."""

    def __init__(self) -> None:
        self.on_progress: Callable[[str, int, int], None] = lambda cid, done, total: None
        self.slot_offset = 0
        self.clock = utcnow
        self.cycles: list[Cycle] = []
        self.reserved: list[str] = []
        self.abandoned: list[int] = []
        self.reserve_delay: anyio.Event | None = None  # holds reservations until set
        self._began = anyio.Event()

    async def reserve_run(self, trigger: str) -> int:
        if self.reserve_delay is not None:
            await self.reserve_delay.wait()
        self.reserved.append(trigger)
        return len(self.reserved)

    async def abandon_run(self, run_id: int, reason: str) -> None:
        self.abandoned.append(run_id)

    async def anything_due(self, trigger: str) -> bool:
        return True

    async def sync_all(self, trigger: str, run_id: int | None = None) -> RunReport:
        cycle = Cycle(trigger, run_id)
        self.cycles.append(cycle)
        self._began.set()
        self._began = anyio.Event()
        try:
            await cycle.finish.wait()
        except anyio.get_cancelled_exc_class():
            cycle.cancelled = True
            raise
        if cycle.crash is not None:
            raise cycle.crash
        return RunReport(run=_run(len(self.cycles), trigger))

    async def cycle(self, n: int) -> Cycle:
        """The n-th cycle (from 1), once it has begun."""
        with anyio.fail_after(5):
            while len(self.cycles) < n:
                await self._began.wait()
        return self.cycles[n - 1]


def _run(run_id: int, trigger: str) -> RunRow:
    """A finished `ok` run: id, trigger, scope, holder, start, end, outcome, then its counts."""
    return RunRow(run_id, trigger, "all", "test", NOW, NOW, "ok", 1, 0, 0, 0, 0, 0, 0)


@asynccontextmanager
async def running(engine: FakeEngine) -> AsyncIterator[Coordinator]:
    """A coordinator whose loop runs for the length of the block."""
    coordinator = Coordinator(engine)
    async with anyio.create_task_group() as tg:
        tg.start_soon(coordinator.run)
        yield coordinator
        tg.cancel_scope.cancel()


async def first_cycle(coordinator: Coordinator, engine: FakeEngine, trigger: str) -> Cycle:
    """Triggers the coordinator's first cycle; returns it once it has begun."""
    assert coordinator.trigger(trigger) == "started"
    return await engine.cycle(1)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


async def test_a_trigger_starts_a_cycle_and_its_report_is_kept(engine: FakeEngine) -> None:
    async with running(engine) as coordinator:
        assert coordinator.trigger("schedule") == "started"
        cycle = await engine.cycle(1)
        assert cycle.trigger == "schedule"
        assert coordinator.running is not None and coordinator.running.trigger == "schedule"

        cycle.finish.set()
        await anyio.wait_all_tasks_blocked()
        assert coordinator.running is None
        assert coordinator.cycles == 1
        assert [r.run.trigger for r in coordinator.reports] == ["schedule"]


async def test_triggers_during_a_cycle_fold_into_exactly_one_follow_up(
    engine: FakeEngine,
) -> None:
    async with running(engine) as coordinator:
        first = await first_cycle(coordinator, engine, "startup")
        answers = [coordinator.trigger(source) for source in ("signal", "http", "schedule")]
        assert answers == ["queued", "queued", "queued"]

        first.finish.set()
        follow_up = await engine.cycle(2)
        assert follow_up.trigger == "signal"  # named for the first trigger it stands for
        follow_up.finish.set()
        await anyio.wait_all_tasks_blocked()
        assert [c.trigger for c in engine.cycles] == ["startup", "signal"]
        assert coordinator.running is None and coordinator.pending is None


async def test_a_sync_asked_for_while_the_clocks_cycle_waits_takes_its_place_and_asks_all(
    engine: FakeEngine,
) -> None:
    """The clock's cycle asks only the due listings (docs/mls-reso.md "Check tiers"); folded
    into it, SIGUSR1 would ask for less than it promises."""
    async with running(engine) as coordinator:
        first = await first_cycle(coordinator, engine, "startup")
        answers = [coordinator.trigger(source) for source in ("schedule", "signal", "schedule")]
        assert answers == ["queued", "queued", "queued"]

        first.finish.set()
        follow_up = await engine.cycle(2)
        assert follow_up.trigger == "signal"
        follow_up.finish.set()
        await anyio.wait_all_tasks_blocked()
        assert [c.trigger for c in engine.cycles] == ["startup", "signal"]


async def test_triggers_before_the_loop_picks_up_the_first_fold_into_one_cycle(
    engine: FakeEngine,
) -> None:
    async with running(engine) as coordinator:
        assert [coordinator.trigger("signal"), coordinator.trigger("http")] == [
            "started",
            "queued",
        ]
        (await engine.cycle(1)).finish.set()
        await anyio.wait_all_tasks_blocked()
        assert [c.trigger for c in engine.cycles] == ["signal"]


async def test_after_stop_a_trigger_is_refused_and_starts_nothing(engine: FakeEngine) -> None:
    async with running(engine) as coordinator:
        with anyio.fail_after(1):
            await coordinator.stop(grace=10)  # idle: returns at once
        assert coordinator.trigger("http") == "refused"
        await anyio.wait_all_tasks_blocked()
        assert engine.cycles == []


async def test_stop_lets_a_cycle_finish_within_the_grace_and_drops_the_follow_up(
    engine: FakeEngine,
) -> None:
    async with running(engine) as coordinator:
        cycle = await first_cycle(coordinator, engine, "schedule")
        assert coordinator.trigger("signal") == "queued"
        stopped = anyio.Event()

        async def stop() -> None:
            await coordinator.stop(grace=10)
            stopped.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop)
            await anyio.sleep(0.2)  # well inside the grace
            assert not stopped.is_set() and not cycle.cancelled
            cycle.finish.set()
        assert stopped.is_set()
        assert not cycle.cancelled
        assert coordinator.cycles == 1
        await anyio.wait_all_tasks_blocked()
        assert [c.trigger for c in engine.cycles] == ["schedule"]


async def test_stop_cancels_a_cycle_that_outlasts_the_grace(engine: FakeEngine) -> None:
    async with running(engine) as coordinator:
        cycle = await first_cycle(coordinator, engine, "schedule")
        with anyio.fail_after(2):
            await coordinator.stop(grace=0.05)
        assert cycle.cancelled
        assert coordinator.running is None
        assert coordinator.cycles == 0  # a cancelled cycle reports nothing
        assert coordinator.trigger("signal") == "refused"


async def test_a_crashed_cycle_leaves_the_coordinator_ready_for_the_next_trigger(
    engine: FakeEngine,
) -> None:
    async with running(engine) as coordinator:
        first = await first_cycle(coordinator, engine, "schedule")
        first.crash = RuntimeError("a bug in the engine")
        first.finish.set()
        await anyio.wait_all_tasks_blocked()
        assert coordinator.running is None

        assert coordinator.trigger("signal") == "started"
        (await engine.cycle(2)).finish.set()
        await anyio.wait_all_tasks_blocked()
        assert coordinator.cycles == 1


async def test_the_running_cycle_shows_each_connections_progress(engine: FakeEngine) -> None:
    async with running(engine) as coordinator:
        cycle = await first_cycle(coordinator, engine, "schedule")
        engine.on_progress("mls-1", 50, 100)
        engine.on_progress("mls-2", 20, 20)
        engine.on_progress("mls-1", 80, 100)
        progress = coordinator.running
        assert progress is not None
        assert (progress.listings_done, progress.listings_total) == (100, 120)
        assert progress.connections_finished == 1
        cycle.finish.set()


async def test_a_requested_cycle_reports_under_the_run_reserved_for_it(
    engine: FakeEngine,
) -> None:
    """POST /v1/sync answers with the run that will report the cycle it asked for."""
    async with running(engine) as coordinator:
        first = await first_cycle(coordinator, engine, "startup")
        answers = [await coordinator.request("http"), await coordinator.request("http")]
        assert answers == [("queued", 1), ("queued", 1)]  # one follow-up, one run
        assert coordinator.trigger("signal") == "queued"

        first.finish.set()
        follow_up = await engine.cycle(2)
        assert (follow_up.trigger, follow_up.run_id) == ("http", 1)
        assert first.run_id is None  # the startup cycle made its own run


async def test_a_run_reserved_for_a_cycle_that_never_begins_is_abandoned_at_stop(
    engine: FakeEngine,
) -> None:
    async with running(engine) as coordinator:
        await first_cycle(coordinator, engine, "startup")
        assert await coordinator.request("http") == ("queued", 1)

        await coordinator.stop(0.05)  # the running cycle outlasts the grace: cancelled

        assert engine.abandoned == [1]  # its follow-up never begins: its run says so
        assert [c.trigger for c in engine.cycles] == ["startup"]
        assert await coordinator.request("http") == ("refused", None)


async def test_a_run_asked_for_is_ended_when_its_cycle_fails_before_beginning_it(
    engine: FakeEngine,
) -> None:
    """A database error before the engine begins the reserved run: the run is not left
    `running` (a follower of POST /v1/sync would wait for ever)."""
    async with running(engine) as coordinator:
        assert await coordinator.request("http") == ("started", 1)
        cycle = await engine.cycle(1)
        cycle.crash = RuntimeError("database is locked")
        cycle.finish.set()
        await anyio.wait_all_tasks_blocked()

        assert engine.abandoned == [1]
        assert coordinator.running is None


async def test_a_cycle_never_starts_while_the_run_asked_for_it_is_being_made(
    engine: FakeEngine,
) -> None:
    """A timer trigger pending while POST /v1/sync reserves its run: the cycle reports under
    that run (not a newer one of its own), so run ids keep the order of the cycles."""
    engine.reserve_delay = anyio.Event()
    async with running(engine) as coordinator:
        async with anyio.create_task_group() as tg:
            answers: list[tuple[str, int | None]] = []

            async def ask() -> None:
                answers.append(await coordinator.request("http"))

            tg.start_soon(ask)
            await anyio.wait_all_tasks_blocked()  # the reservation is under way
            assert coordinator.trigger("schedule") == "started"
            await anyio.wait_all_tasks_blocked()
            assert engine.cycles == []  # the loop waits for the reservation
            engine.reserve_delay.set()
        cycle = await engine.cycle(1)
        assert cycle.run_id == 1 and answers == [("queued", 1)]


async def test_a_clock_trigger_never_takes_the_place_of_a_waiting_startup_cycle(
    engine: FakeEngine,
) -> None:
    """The startup cycle syncs every connection; the clock's (and its catch-ups) only what
    no daemon synced in the slot: folded together, the startup's stays."""
    async with running(engine) as coordinator:
        first = await first_cycle(coordinator, engine, "signal")
        assert coordinator.trigger("startup") == "queued"
        assert coordinator.trigger("schedule") == "queued"
        assert coordinator.trigger("catch_up") == "queued"
        first.finish.set()
        follow_up = await engine.cycle(2)
        assert follow_up.trigger == "startup"
        follow_up.finish.set()
