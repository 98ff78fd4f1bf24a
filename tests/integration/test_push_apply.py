"""Applying the events an MLS pushed (docs/mls-reso.md "Push"), on the engine, against the
sandbox MLS over real HTTP: what stays queued, what is given up, and what a push run does
not claim."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from daemon.composition import Runtime
from daemon.ops import push
from daemon.sandbox.faults import Fault
from daemon.service.change_log_polls import ChangeLogPolls
from daemon.store import connections, leases, pushed_events, runs
from daemon.store.pushed_events import PushedEvent
from daemon.store.records import ConnectionRow
from daemon.sync.connection import PUSH_ATTEMPTS
from daemon.sync.engine import PollOutcome, RunReport
from daemon.timestamps import iso
from tests.helpers import Mls, add_connection, status_of, track

pytestmark = pytest.mark.both_databases

KEYS = ["P1", "P2", "P3"]
LIMIT = 1000


async def _prepared(runtime: Runtime, mls: Mls) -> ConnectionRow:
    sandbox, url = mls
    for key in KEYS:
        sandbox.put(key, "Active")
    await add_connection(runtime, url, mode="events")
    await track(runtime, "mls-1", KEYS)
    await runtime.engine.sync_all()  # the full pass
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None
    return row


async def _queue(runtime: Runtime, *keys: str) -> None:
    events = [PushedEvent(5000 + i, k) for i, k in enumerate(keys)]
    assert await pushed_events.queue(runtime.db, "mls-1", events, None, "2026-01-01", LIMIT)


async def test_a_pushed_event_whose_read_fails_stays_queued_and_is_given_up_with_an_error(
    runtime: Runtime, mls: Mls
) -> None:
    sandbox, _ = mls
    row = await _prepared(runtime, mls)
    sandbox.set_status("P1", "Closed")
    await _queue(runtime, "P1")
    sandbox.faults.add(Fault("status", status=500, times=1000, matching="P1"))

    for attempt in range(1, PUSH_ATTEMPTS + 1):
        failed = await runtime.engine.apply_pushes(row)
        assert failed.outcome == "pushed" and failed.report is not None
        assert failed.report.run.errors == 1
        assert not failed.more_pushed  # no progress: not tried again at once
        assert await pushed_events.waiting(runtime.db, "mls-1") == 1, attempt

    given_up = await runtime.engine.apply_pushes(row)

    assert given_up.report is not None and given_up.report.run.errors == 1
    errors = await runs.errors_of(runtime.db, given_up.report.run.id)
    assert "given up after 5 applies" in errors[0].message
    assert await pushed_events.waiting(runtime.db, "mls-1") == 0
    assert await status_of(runtime, "P1") == "active"  # the next read of the log finds it
    sandbox.faults.clear()
    await runtime.engine.sync_all()
    assert await status_of(runtime, "P1") == "sold"


async def test_a_push_run_is_no_read_of_the_change_log_for_the_connections_health(
    runtime: Runtime, mls: Mls
) -> None:
    """It claims neither the connection's last sync nor a clean last error: a log that
    cannot be read must show while pushes come in."""
    sandbox, _ = mls
    row = await _prepared(runtime, mls)
    await connections.set_state(runtime.db, "mls-1", "active", "the log failed", "2026-01-02")
    before = await connections.get(runtime.db, "mls-1")
    assert before is not None
    sandbox.set_status("P2", "Closed")
    await _queue(runtime, "P2")

    applied = await runtime.engine.apply_pushes(row)

    assert applied.report is not None
    assert (applied.report.run.trigger, applied.report.run.scope) == ("push", "push:mls-1")
    assert await status_of(runtime, "P2") == "sold"
    after = await connections.get(runtime.db, "mls-1")
    assert after is not None
    assert (after.last_synced_at, after.last_error) == (before.last_synced_at, "the log failed")


async def test_leaving_events_mode_ends_push_and_drops_what_it_queued(
    runtime: Runtime, mls: Mls
) -> None:
    _, url = mls
    await _prepared(runtime, mls)
    token = push.new_push_token()
    await connections.set_push_token(
        runtime.db, "mls-1", push.push_token_sha256(token), "2026-01-01"
    )
    await _queue(runtime, "P1", "P2")
    assert await push.authorized(runtime.db, "mls-1", token)

    await add_connection(runtime, url, mode="by_key")

    assert not await push.authorized(runtime.db, "mls-1", token)
    assert await pushed_events.waiting(runtime.db, "mls-1") == 0
    row = await connections.get(runtime.db, "mls-1")
    assert row is not None and row.push_token_sha256 is None


async def test_a_cycle_waits_for_a_poll_between_cycles_instead_of_skipping_the_connection(
    runtime: Runtime, mls: Mls
) -> None:
    """A read of the change log holds the connection's lease for a moment: the cycle that
    starts meanwhile syncs the connection once it is free, rather than skip it and say ok."""
    sandbox, _ = mls
    row = await _prepared(runtime, mls)
    sandbox.set_status("P3", "Closed")
    # The poll's first request (is there anything?) passes; its read of the log is slow.
    sandbox.faults.add(Fault("slow", seconds=0.5, after=1))
    polled: list[str] = []

    async def poll() -> None:
        polled.append((await runtime.engine.poll_change_log(row)).outcome)

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll)
        with anyio.fail_after(5):
            while await leases.holder_of(runtime.db, "mls-1") is None:
                await anyio.sleep(0.01)
        cycle = await runtime.engine.sync_all()

    assert polled == ["synced"]
    assert (cycle.run.outcome, cycle.run.warnings, cycle.run.connections) == ("ok", 0, 1)


async def _cycle_while_held(runtime: Runtime, holder: str) -> RunReport:
    """A cycle while `holder` holds mls-1's lease for a minute more."""
    now = datetime.now(UTC)
    held = leases.LeaseRequest("mls-1", holder, iso(now), iso(now + timedelta(minutes=1)))
    assert await leases.acquire(runtime.db, held)
    with anyio.fail_after(10):
        return await runtime.engine.sync_all()


async def test_a_cycle_skips_a_connection_a_longer_sync_of_this_process_holds(
    runtime: Runtime, mls: Mls
) -> None:
    """A user's sync or a full pass may take minutes: the cycle does not wait for it."""
    await _prepared(runtime, mls)
    cycle = await _cycle_while_held(runtime, f"{runtime.engine.holder}:user")
    assert cycle.run.warnings == 1


async def test_a_cycle_still_skips_a_connection_another_process_holds(
    runtime: Runtime, mls: Mls
) -> None:
    await _prepared(runtime, mls)
    cycle = await _cycle_while_held(runtime, "elsewhere:4242:x")
    assert cycle.run.warnings == 1
    errors = await runs.errors_of(runtime.db, cycle.run.id)
    assert "already being synced by elsewhere:4242:x" in errors[0].message


async def test_an_event_that_failed_waits_for_the_next_read_of_the_log_not_the_next_push(
    runtime: Runtime, mls: Mls
) -> None:
    """Pushes that keep coming apply their own events only: one whose listing's read failed
    is tried again with the connection's next read of the log, once an interval."""
    sandbox, _ = mls
    row = await _prepared(runtime, mls)
    await _queue(runtime, "P1")
    sandbox.faults.add(Fault("status", status=500, times=1000, matching="P1"))
    await runtime.engine.apply_pushes(row)  # P1 fails once
    sandbox.set_status("P2", "Closed")
    await _queue(runtime, "P2")

    between = await runtime.engine.apply_pushes(row, retry_failed=False)

    assert between.report is not None and between.report.run.errors == 0
    assert await status_of(runtime, "P2") == "sold"
    [p1] = await pushed_events.take(runtime.db, "mls-1", LIMIT)
    assert (p1.record_key, p1.attempts) == ("P1", 1)  # not tried again meanwhile


class HeldPushes:
    """An engine whose first apply of pushed events lasts until the test releases it."""

    def __init__(self) -> None:
        self.applies: list[float] = []
        self.release = anyio.Event()

    async def poll_change_log(self, row: ConnectionRow) -> PollOutcome:
        return PollOutcome("quiet")

    async def apply_pushes(self, row: ConnectionRow, retry_failed: bool) -> PollOutcome:
        self.applies.append(time.monotonic())
        if len(self.applies) == 1:
            await self.release.wait()
        return PollOutcome("none")


async def test_a_push_that_arrives_while_the_last_one_is_applied_is_applied_right_after_it(
    runtime: Runtime, mls: Mls
) -> None:
    """Not a tick later: pushes that come about once a second would each wait up to one."""
    await add_connection(runtime, mls[1], mode="events", poll_seconds=3600)
    engine = HeldPushes()
    polls = ChangeLogPolls(runtime.db, engine)
    async with anyio.create_task_group() as tg:
        tg.start_soon(polls.run)
        with anyio.fail_after(5):
            while not engine.applies:
                await anyio.sleep(0.01)
        polls.pushed("mls-1")  # while the first apply is still under way
        await anyio.sleep(0.05)
        released = time.monotonic()
        engine.release.set()
        with anyio.fail_after(5):
            while len(engine.applies) < 2:
                await anyio.sleep(0.01)
        await polls.stop(1)
        tg.cancel_scope.cancel()

    assert engine.applies[1] - released < 0.3


async def test_a_sync_that_lost_its_lease_does_not_count_its_failed_read_against_the_events(
    runtime: Runtime, mls: Mls
) -> None:
    """A process paused past its lease, the connection taken over meanwhile, comes back to a
    read that failed: the events' count of failed applies is their new holder's to keep, so
    they are never given up sooner than PUSH_ATTEMPTS of its own reads."""
    sandbox, _ = mls
    row = await _prepared(runtime, mls)
    await _queue(runtime, "P1")
    sandbox.faults.add(Fault("slow", seconds=2.5, matching="P1"))  # past the client's 2 s
    sandbox.faults.add(Fault("status", status=500, times=1000, matching="P1"))
    asked = sum(sandbox.requests.values())

    async def take_over() -> None:
        while sum(sandbox.requests.values()) == asked:  # the read of P1 is under way
            await anyio.sleep(0.01)
        until = iso(datetime.now(UTC) + timedelta(minutes=5))
        await leases.put_own(runtime.db, "mls-1", "other-host:4242:abcd", until)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(take_over)
        failed = await runtime.engine.apply_pushes(row)

    assert failed.report is not None
    errors = await runs.errors_of(runtime.db, failed.report.run.id)
    assert any("not checked" in e.message for e in errors), errors
    [queued] = await pushed_events.take(runtime.db, "mls-1", LIMIT)
    assert queued.attempts == 0


async def test_an_apply_of_pushes_that_a_cycle_beats_to_the_lease_does_not_wait_for_itself(
    runtime: Runtime, mls: Mls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle of this process takes the connection's lease between the apply's look at it
    and the apply's own take (a race a loaded machine made in an end-to-end run): the apply
    is over at once, its events still queued for the next one. Before, it waited for the end
    of the run between cycles holding the connection, which was itself: a whole lease time,
    every push behind it waiting too."""
    row = await _prepared(runtime, mls)
    await _queue(runtime, "P1")
    cycle = f"{runtime.engine.holder}:cycle"
    now = datetime.now(UTC)
    held = leases.LeaseRequest("mls-1", cycle, iso(now), iso(now + timedelta(minutes=5)))

    async def taken_after_the_look(connection_id: str) -> bool:
        assert await leases.acquire(runtime.db, held)  # the cycle, just after the look
        return False

    monkeypatch.setattr(runtime.engine, "_held_elsewhere", taken_after_the_look)
    with anyio.fail_after(10):
        applied = await runtime.engine.apply_pushes(row)

    assert applied.report is not None and applied.report.run.warnings == 1
    assert await pushed_events.waiting(runtime.db, "mls-1") == 1


async def test_a_pushed_sale_the_servers_read_cache_hid_is_found_at_the_next_cycle(
    runtime: Runtime, mls: Mls
) -> None:
    """A push comes the moment the MLS logs the change, when a server's reads may not show
    it yet (a cache, a replica): P2's read still says active. The next cycle, within the
    connection's overlap, reads P2 again, with no event of its own (docs/mls-reso.md "The
    change log")."""
    sandbox, _ = mls
    row = await _prepared(runtime, mls)
    await _queue(runtime, "P2")  # pushed; the record the server reads out is still the old one
    applied = await runtime.engine.apply_pushes(row)
    assert applied.report is not None and applied.report.run.listings_checked == 1
    assert await status_of(runtime, "P2") == "active"
    sandbox.change_unlogged("P2", "Closed")  # the server's reads catch up

    await runtime.engine.sync_all()

    assert await status_of(runtime, "P2") == "sold"
