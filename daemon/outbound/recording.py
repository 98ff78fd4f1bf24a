"""Deliveries recorded while the next ones are sent: the worker goes on sending an endpoint's
events while those already answered 2xx are written, a batch per transaction, at most one
transaction per RECORD_EVERY seconds.

Writing each event's record before sending the next would put a transaction in every round
trip, and take SQLite's one write lock hundreds of times a second from the sync, whose waits
for it then cost far more than the writes (docs/benchmarks.md, scenario D). Batching keeps
the order (a batch moves the cursor past its last event, or past the events after it that
are not for the endpoint, and batches are written in order)
and costs one thing: a crash loses the record of what was answered and not yet written, and
those events are sent again, in order, before the ones after them (at least once, each with
its same `webhook-id`). `MAX_UNRECORDED` bounds how many that can be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio

from daemon.store.webhooks import Answered

MAX_UNRECORDED = 500  # answers not yet written (a batch being written included), at most
RECORD_EVERY = 0.1  # seconds between two writes while answers keep coming

# (cursor before the batch, the batch, the cursor after it) -> written? False: the cursor
# moved meanwhile or the endpoint was disabled, and nothing was written. None: not written
# yet (the database stayed busy): the batch is kept and written later, never sent again for
# it. The cursor after may be past the batch's last event: events passed over (not for the
# endpoint) after it.
Write = Callable[[int, Sequence[Answered], int], Awaitable[bool | None]]


class Recorder:
    """Runs (`run`) beside the sender, which `add`s each answer in event order, tells how
    far it `passed_over` events that are not for the endpoint, and `close`s when it sends
    no more; `run` returns once everything added is written."""

    def __init__(
        self,
        write: Write,
        cursor: int,
        on_written: Callable[[Sequence[Answered]], None],
        every: float = RECORD_EVERY,
    ) -> None:
        self.cursor = cursor  # the last event whose delivery is written
        self.stopped = False  # a write was refused: send no more, look at the endpoint again
        self._write = write
        self._on_written = on_written
        self._every = every
        self._answered: list[Answered] = []
        self._writing = 0  # answers in the write under way
        self._upto = cursor  # where the next write leaves the cursor
        self._closing = False
        self._more = anyio.Event()
        self._room = anyio.Event()
        self._urgent = anyio.Event()  # closing, or full: write without waiting out `every`

    @property
    def unwritten(self) -> int:
        """Answers added and not written yet, the batch being written included."""
        return len(self._answered) + self._writing

    async def add(self, answered: Answered) -> None:
        # The sender waits while the bound is reached: a write the database cannot take yet
        # keeps its batch, and what came meanwhile must not pile up behind it.
        while self.unwritten >= MAX_UNRECORDED and not self.stopped:
            self._urgent.set()
            self._room = anyio.Event()
            await self._room.wait()
        self._answered.append(answered)
        self._upto = answered.event_id
        self._more.set()

    def passed_over(self, upto: int) -> None:
        """Every event up to `upto` was answered (and added) or is not for the endpoint: the
        cursor may move past them, with the next write."""
        if upto > self._upto:
            self._upto = upto
            self._more.set()

    def close(self) -> None:
        self._closing = True
        self._more.set()
        self._urgent.set()

    async def run(self) -> None:
        """Cancelled (the daemon stops), it still writes what was answered before it goes:
        an event answered and not recorded is sent again, which only a crash should cause."""
        try:
            while not self.stopped:
                if self._unwritten():
                    await self._write_answered()
                    await self._pause()
                elif self._closing:
                    return
                else:
                    self._more = anyio.Event()
                    await self._more.wait()
        finally:
            with anyio.CancelScope(shield=True):
                if self._unwritten() and not self.stopped:
                    await self._write_answered()

    def _unwritten(self) -> bool:
        return bool(self._answered) or self._upto > self.cursor

    async def _pause(self) -> None:
        """The write lock left to the sync for `every` seconds, unless there is no time to
        wait (closing, or full)."""
        if self._closing or self.unwritten >= MAX_UNRECORDED:
            return
        self._urgent = anyio.Event()
        with anyio.move_on_after(self._every):
            await self._urgent.wait()

    async def _write_answered(self) -> None:
        batch, upto, self._answered = self._answered, self._upto, []
        self._writing = len(batch)
        try:
            written = await self._write(self.cursor, batch, upto)
        finally:
            self._writing = 0
            self._room.set()
        if written is None:  # first again, ahead of what came meanwhile
            self._answered = batch + self._answered
        elif written:
            self.cursor = upto
            if batch:
                self._on_written(batch)
        else:
            self.stopped = True
            self._room.set()
