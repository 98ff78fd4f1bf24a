"""Group commit: the writes of many tasks in one transaction.

The database is one sqlite3 connection on one thread, behind one lock. Each statement is a
round trip to that thread, and a task's next statement waits for the event loop to come back
to it; with hundreds of connections syncing at once, a transaction per batch kept the lock
held (and everyone else waiting) for the whole cycle. Here tasks hand their writes to one
writer task, which commits everything queued while its last transaction ran in one
transaction of a few statements, however many batches it holds.

Each item still commits all-or-nothing (a batch's statuses, audit rows and cursor together,
invariants 1 and 5); a group only adds other items to the same transaction. When a group
fails, each of its items is retried alone, so an item's error reaches only its own submitter.
A write may also refuse one item by returning a `Refused` for it: the rest of the group (and
whatever the write recorded about the refusal) commits, and that item's submitter gets the error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import anyio

from daemon.store.database import Database
from daemon.store.session import Session

Item = TypeVar("Item")
Result = TypeVar("Result")

# Work per transaction (in the units of the writer's `weight`, by default items): enough
# that a group rarely waits for the lock again, small enough that preparing it (on the event
# loop) and running it stay short for everyone else: the HTTP answers the loop also serves,
# and the other users of the database.
MAX_GROUP = 500


class Refused(Exception):
    """An item its write declined inside a transaction that commits (returned, not raised)."""


class _Entry(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = anyio.Event()
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupWriter(Generic[Item, Result]):
    """`write(conn, items)` runs inside one transaction and returns one result per item.
    A group holds at most `max_group` of `weight` (one item alone may weigh more). With
    `reads`, `write` only reads, and runs in one `Database.reading` instead (`group_reader`)."""

    def __init__(
        self,
        db: Database,
        write: Callable[[Session, Sequence[Item]], Awaitable[Sequence[Result | Refused]]],
        max_group: int = MAX_GROUP,
        weight: Callable[[Item], int] = lambda item: 1,
        reads: bool = False,
    ) -> None:
        self._db = db
        self._within = db.reading if reads else db.transaction
        self._write = write
        self._max_group = max_group
        self._weight = weight
        self._pending: list[_Entry[Item, Result]] = []
        self._wake = anyio.Event()
        self._running = False
        self.transactions = 0  # committed groups, for tests and the benchmark's curiosity

    async def submit(self, item: Item) -> Result:
        """Returns once `item` is committed, or read (or raises what its own write raised)."""
        if not self._running:
            raise RuntimeError("GroupWriter.submit outside `GroupWriter.running()`")
        entry: _Entry[Item, Result] = _Entry(item)
        self._pending.append(entry)
        self._wake.set()
        await entry.done.wait()
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]  # set whenever error is not

    @asynccontextmanager
    async def running(self) -> AsyncIterator[GroupWriter[Item, Result]]:
        """The writer task, for as long as the block runs. Leave the block only when no
        submitter is waiting (the block's own task groups have ended)."""
        async with anyio.create_task_group() as tg:
            self._running = True
            tg.start_soon(self._writer)
            try:
                yield self
            finally:
                self._running = False
                tg.cancel_scope.cancel()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._pending:
                await self._commit(self._next_group())

    def _next_group(self) -> list[_Entry[Item, Result]]:
        """The oldest entries, as many as fit in `max_group` (always at least one)."""
        taken, total = 0, 0
        for entry in self._pending:
            total += self._weight(entry.item)
            if taken and total > self._max_group:
                break
            taken += 1
        group = self._pending[:taken]
        del self._pending[:taken]
        return group

    async def _commit(self, group: list[_Entry[Item, Result]]) -> None:
        try:
            async with self._within() as conn:
                results = await self._write(conn, [e.item for e in group])
        except Exception as exc:
            if len(group) > 1:
                for entry in group:  # find the one at fault: it alone gets the error
                    await self._commit([entry])
                return
            group[0].error = exc
            group[0].done.set()
            return
        self.transactions += 1
        for entry, result in zip(group, results, strict=True):
            if isinstance(result, Refused):
                entry.error = result
            else:
                entry.result = result
            entry.done.set()


def group_reader(
    db: Database,
    read: Callable[[Session, Sequence[Item]], Awaitable[Sequence[Result]]],
    max_group: int = MAX_GROUP,
) -> GroupWriter[Item, Result]:
    """The reads many tasks ask for while the last group's ran, in one go: `read(conn,
    items)` gives one result per item, in one `Database.reading` (with `Session.fetch_each`,
    one trip for all of them). An item whose read fails gets the error alone, as a write
    does."""
    return GroupWriter(db, read, max_group, reads=True)
