"""The recorder of delivered webhooks (daemon/outbound/recording.py), with the database's
answers played by a fake: a batch the database could not take yet is kept and written later,
in order, and never reported as refused (which would send its events again)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from daemon.outbound.recording import MAX_UNRECORDED, Recorder
from daemon.store.webhooks import Answered, Attempt


def _answered(event_id: int) -> Answered:
    return Answered(event_id, Attempt(0, "2026-11-30T00:00:00Z", 200, 1, None, "ok"))


async def test_a_batch_the_database_could_not_take_yet_is_written_later_not_sent_again() -> None:
    tries: list[tuple[int, list[int]]] = []
    outcomes = [None, None, True, True]  # busy twice, then written

    async def write(cursor: int, batch: Sequence[Answered], upto: int) -> bool | None:
        tries.append((cursor, [a.event_id for a in batch]))
        return outcomes.pop(0)

    written: list[int] = []
    recorder = Recorder(write, 10, lambda b: written.extend(a.event_id for a in b), every=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(recorder.run)
        for event_id in (11, 12):
            await recorder.add(_answered(event_id))
        await anyio.sleep(0.01)
        await recorder.add(_answered(13))
        recorder.close()
    assert not recorder.stopped
    assert written == [11, 12, 13]
    assert recorder.cursor == 13
    assert all(cursor == 10 for cursor, _ in tries[:3])  # nothing moved until it was written
    assert tries[0][1] == [11, 12]


async def test_a_refused_batch_stops_the_sending() -> None:
    async def write(cursor: int, batch: Sequence[Answered], upto: int) -> bool | None:
        return False  # the endpoint was disabled, or its cursor moved

    recorder = Recorder(write, 10, lambda b: None, every=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(recorder.run)
        await recorder.add(_answered(11))
        recorder.close()
    assert recorder.stopped
    assert recorder.cursor == 10


async def test_events_passed_over_move_the_cursor_past_them_behind_the_answers() -> None:
    """Events not for the endpoint, after the last answered, move the cursor with the next
    write; passed over alone, they are written too (the endpoint's lag is read from it)."""
    tries: list[tuple[int, list[int], int]] = []

    async def write(cursor: int, batch: Sequence[Answered], upto: int) -> bool | None:
        tries.append((cursor, [a.event_id for a in batch], upto))
        return True

    written: list[int] = []
    recorder = Recorder(write, 10, lambda b: written.extend(a.event_id for a in b), every=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(recorder.run)
        await recorder.add(_answered(11))
        recorder.passed_over(15)
        await anyio.sleep(0.01)
        recorder.passed_over(20)
        await anyio.sleep(0.01)
        recorder.passed_over(18)  # behind: changes nothing
        recorder.close()
    assert tries == [(10, [11], 15), (15, [], 20)]
    assert written == [11]
    assert recorder.cursor == 20


async def test_answers_not_yet_written_stay_bounded_while_the_database_stays_busy() -> None:
    """A write the database could not take yet keeps its batch; the sender meanwhile waits
    once MAX_UNRECORDED answers, those of the batch being written included, are unwritten."""
    most = 0
    waiting = [True] * 3  # busy three times, then it takes what it is given

    async def write(cursor: int, batch: Sequence[Answered], upto: int) -> bool | None:
        nonlocal most
        most = max(most, recorder.unwritten)
        await anyio.sleep(0.01)
        return None if waiting and waiting.pop() else True

    recorder = Recorder(write, 0, lambda b: None, every=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(recorder.run)
        for event_id in range(1, 3 * MAX_UNRECORDED):
            await recorder.add(_answered(event_id))
        recorder.close()
    assert recorder.cursor == 3 * MAX_UNRECORDED - 1
    assert most <= MAX_UNRECORDED
