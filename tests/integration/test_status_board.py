"""/status, /readyz and /metrics read a snapshot through a read-only connection of their own:
they must answer while a cycle holds the writer, and show a change announced before them."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import anyio
import pytest

from daemon.composition import Runtime
from daemon.config import CheckIntervalSettings
from daemon.ops.connections import tiers_shown
from daemon.sandbox.faults import Fault
from daemon.service.board import StatusBoard
from daemon.timestamps import iso, utcnow
from tests.helpers import Mls, add_connection, track, wait_until

pytestmark = pytest.mark.both_databases


async def test_status_answers_while_the_writer_holds_a_long_transaction(runtime: Runtime) -> None:
    await add_connection(runtime, "http://127.0.0.1:9")
    async with (
        runtime.db.reader() as reader,
        anyio.create_task_group() as tg,
    ):
        board = StatusBoard(reader)
        tg.start_soon(board.run)
        held = anyio.Event()

        async def hold_the_writer() -> None:
            async with runtime.db.transaction() as conn:
                await conn.execute("UPDATE mls_connections SET name = 'renamed'")
                held.set()
                await anyio.sleep(3)

        tg.start_soon(hold_the_writer)
        await held.wait()
        started = time.perf_counter()
        with anyio.fail_after(1):
            snapshot = await board.current()
            await board.ping()
        waited = time.perf_counter() - started
        tg.cancel_scope.cancel()

    part = json.loads(snapshot.body)
    assert waited < 1
    # Only what was committed: the rename inside the open transaction is not seen.
    assert [c["name"] for c in part["connections"]] == ["Test mls-1"]


async def test_a_change_announced_shows_in_the_next_answer_not_a_second_later(
    runtime: Runtime,
) -> None:
    await add_connection(runtime, "http://127.0.0.1:9")
    async with (
        runtime.db.reader() as reader,
        anyio.create_task_group() as tg,
    ):
        board = StatusBoard(reader, max_age=60)  # only an announced change refreshes it now
        tg.start_soon(board.run)
        before = await board.current()
        await track(runtime, "mls-1", ["A1", "A2"], status="active")
        unannounced = await board.current()
        board.changed()
        after = await board.current()
        tg.cancel_scope.cancel()

    assert before.listings_by_status == {}
    assert unannounced.listings_by_status == {}  # a snapshot, until told
    assert after.listings_by_status == {"active": 2}
    assert after.connections_by_state == {"active": 1}


async def test_status_is_read_again_at_most_once_per_max_age(runtime: Runtime) -> None:
    async with (
        runtime.db.reader() as reader,
        anyio.create_task_group() as tg,
    ):
        board = StatusBoard(reader, max_age=0.3)
        tg.start_soon(board.run)
        taken = set()
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # asked hundreds of times
            taken.add((await board.current()).taken_at)
            await anyio.sleep(0.002)
        tg.cancel_scope.cancel()

    assert 2 <= len(taken) <= 5


# What a cycle writes for a listing it found active, unchanged for days.
CHECKED_ACTIVE = """
UPDATE listings SET status = 'active', status_changed_at = :long_ago, last_checked_at = :now
"""


async def test_a_tier_summary_read_while_a_cycle_ends_is_not_kept_after_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle announces its end while /status is summing the tiers: that sum, taken before
    the cycle's last writes, must not be what /status shows for the next minute."""
    await add_connection(runtime, "http://127.0.0.1:9")
    await track(runtime, "mls-1", ["A1"])  # unchecked until a cycle answers for it
    async with (
        runtime.db.reader() as reader,
        anyio.create_task_group() as tg,
    ):
        board = StatusBoard(reader, max_age=60, check_intervals=CheckIntervalSettings())
        summed = tiers_shown

        async def cycle_ends_meanwhile(*args: Any, **kwargs: Any) -> Any:
            shown = await summed(*args, **kwargs)  # before the cycle's writes
            checked = {"now": iso(utcnow()), "long_ago": iso(utcnow() - timedelta(days=2))}
            await runtime.db.write_one(CHECKED_ACTIVE, checked)
            board.changed()  # the cycle's end, announced while the sum is on its way
            monkeypatch.setattr(f"{StatusBoard.__module__}.tiers_shown", summed)
            return shown

        monkeypatch.setattr(f"{StatusBoard.__module__}.tiers_shown", cycle_ends_meanwhile)
        tg.start_soon(board.run)
        await board.current()
        after = json.loads((await board.current()).body)
        tg.cancel_scope.cancel()

    tiers = after["check_tiers"]
    assert (tiers["unchecked"]["listings"], tiers["active"]["listings"]) == (0, 1)


async def test_status_names_the_process_syncing_each_connection_while_it_does(
    runtime: Runtime, mls: Mls
) -> None:
    """With several daemons on one database, which one syncs what (issue 16)."""
    sandbox, url = mls
    sandbox.put("K", "Active")
    await add_connection(runtime, url)
    await track(runtime, "mls-1", ["K"])
    sandbox.faults.add(Fault("slow", seconds=2))
    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.engine.sync_all, "signal")
        await wait_until(lambda: sandbox.in_flight == 1)
        [during] = await _connections_shown(runtime)
        tg.cancel_scope.cancel()
    assert during["held_by"].startswith(f"{runtime.engine.holder}:")  # host:pid:nonce
    assert during["held_until"] > iso(utcnow())

    after = await runtime.engine.sync_all("signal")
    assert after.run.errors == 0
    [done] = await _connections_shown(runtime)
    assert (done["held_by"], done["held_until"]) == (None, None)


async def _connections_shown(runtime: Runtime) -> list[dict[str, Any]]:
    """The connections as /status shows them now."""
    async with runtime.db.reader() as reader, anyio.create_task_group() as tg:
        board = StatusBoard(reader)
        tg.start_soon(board.run)
        shown: list[dict[str, Any]] = json.loads((await board.current()).body)["connections"]
        tg.cancel_scope.cancel()
    return shown
