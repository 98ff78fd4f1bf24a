"""A transaction on SQLite in as few trips to aiosqlite's thread as its work allows
(docs/benchmarks.md "A transaction's ends in its statements' trips")."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiosqlite

from daemon.store.dialect import Statement, sqlite_text
from daemon.store.errors import from_sqlite
from daemon.store.session import (
    Held,
    NotBegun,
    Params,
    Read,
    Returned,
    Row,
    SqliteSession,
    Step,
    changed,
    changed_by_each,
    committed,
    fetched,
    fetched_each,
    rolled_back,
)


class SqliteTransaction(SqliteSession):
    """`Session` inside one transaction, in as few trips to aiosqlite's thread as its work
    allows: its BEGIN goes with its first statement, and the writes `execute_batch` is given
    are held until the next statement or the COMMIT, and go with it; a transaction that runs
    nothing makes no trip (docs/benchmarks.md "A transaction's ends in its statements'
    trips"). A held write that fails does so at that next trip, the statement's or the
    COMMIT's. Only where aiosqlite runs a function of ours on its thread (`ONE_TRIP`)."""

    __slots__ = ("_begin", "_broken", "_held")

    def __init__(self, conn: aiosqlite.Connection, begin: str) -> None:
        super().__init__(conn)
        self._begin: str | None = begin  # until it has gone to the thread
        self._held: Held = []
        # The BEGIN's failure: every later call fails with it too, so that a caller that
        # caught the first cannot go on outside a transaction (each statement its own).
        self._broken: sqlite3.Error | None = None

    async def execute(self, sql: Statement, params: Params = ()) -> int:
        return await self._trip(changed, sqlite_text(sql), params)

    async def execute_many(self, sql: Statement, rows: Iterable[Params]) -> int:
        return await self._trip(changed_by_each, sqlite_text(sql), rows)

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]:
        return await self._trip(fetched, sqlite_text(sql), params)

    async def fetch_each(self, reads: Sequence[Read]) -> list[list[Row]]:
        return await self._trip(fetched_each, [(sqlite_text(sql), p) for sql, p in reads])

    async def execute_batch(self, steps: Sequence[Step]) -> None:
        if self._broken is not None:
            raise from_sqlite(self._broken) from self._broken
        self._held += [(sqlite_text(sql), rows) for sql, rows in steps]

    async def commit(self) -> None:
        """What is held, and COMMIT, in one trip; none when nothing ever went to the thread
        (SQLite never began the transaction)."""
        if self._begin is not None and not self._held:
            self._begin = None
            return
        await self._trip(committed)

    async def rollback(self) -> None:
        """Drops what is held, and rolls back what went to the thread, if it began: its
        BEGIN may have failed, or a cancelled call may still be running on the thread (this
        trip waits behind it)."""
        self._held = []
        if self._begin is not None:  # nothing went to the thread
            self._begin = None
            return
        await self._on_thread(None, [], rolled_back)

    async def _trip(self, last: Callable[..., Returned], *args: Any) -> Returned:
        """One trip: the BEGIN if it has not gone yet, the held writes, then `last`."""
        if self._broken is not None:
            raise from_sqlite(self._broken) from self._broken
        begin, held = self._begin, self._held
        self._begin, self._held = None, []
        try:
            return await self._on_thread(begin, held, last, *args)
        except NotBegun as exc:
            cause = exc.__cause__
            assert isinstance(cause, sqlite3.Error)
            self._broken = cause
            raise from_sqlite(cause) from cause
