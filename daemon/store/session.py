"""The store's view of a database connection: the calls every store module makes.

Store modules are written against `Session` and `Row`, never against a driver, so that the
same module runs on SQLite or PostgreSQL (docs/postgresql.md, step 2). Every error comes out
as the store's own (daemon/store/errors.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import aiosqlite

from daemon.store.dialect import Statement, sqlite_text
from daemon.store.errors import from_sqlite

Params = Mapping[str, Any] | Sequence[Any]


class Row(Protocol):
    """One row of a read, by column name or by position."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def keys(self) -> list[str]: ...


class Session(Protocol):
    """One connection, inside a transaction or reading, for one task at a time."""

    async def execute(self, sql: Statement, params: Params = ()) -> int:
        """Runs one statement; the number of rows it changed."""
        ...

    async def execute_many(self, sql: Statement, rows: Iterable[Params]) -> int:
        """Runs one statement for each set of parameters; the rows changed in all."""
        ...

    async def fetch_one(self, sql: Statement, params: Params = ()) -> Row | None:
        """The first row of a read, or None. Meant for reads of one row: every row the
        statement yields is read."""
        ...

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]: ...

    async def fetch_each(self, reads: Sequence[Read]) -> list[list[Row]]:
        """Each read's rows, the reads run in order; on SQLite in one trip to its thread, on
        PostgreSQL in one round trip (docs/benchmarks.md "A transaction's ends in its
        statements' trips")."""
        ...

    async def execute_batch(self, steps: Sequence[Step]) -> None:
        """Runs each statement for each of its sets of parameters, in order, as `execute_many`
        would one after the other; on SQLite in one trip to its thread (`WriteBatch`)."""
        ...


# A statement and the sets of parameters it runs with.
Step = tuple[Statement, Sequence[Params]]
# A read: a statement and its parameters.
Read = tuple[Statement, Params]


class Writes(Protocol):
    """What a function that only writes needs of a session. It does not read what its
    statements changed, so they may be held and run later, together (`WriteBatch`)."""

    async def execute_many(self, sql: Statement, rows: Iterable[Params]) -> object: ...


class WriteBatch:
    """Writes held (`Writes`), to run in one go with `Session.execute_batch`: on SQLite each
    statement is a trip to aiosqlite's thread and back, a hand-off of the interpreter's lock
    and two wake-ups, and the group of writes of a sync paid one per statement
    (docs/benchmarks.md "A group's writes in one trip")."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps: list[Step] = []

    async def execute_many(self, sql: Statement, rows: Iterable[Params]) -> None:
        held = list(rows)
        if held:
            self.steps.append((sql, held))


# Whether this aiosqlite runs a function of ours on its thread, as `execute_batch` needs:
# only through its own `_execute`, with its sqlite3 connection as `_conn`, neither part of
# its API (so pyproject.toml holds aiosqlite below its next minor release). Where not, each
# statement of a batch makes its own trip: slower, the same writes; the store says so when
# it opens (daemon/store/sqlite.py).
ONE_TRIP = hasattr(aiosqlite.Connection, "_execute") and hasattr(aiosqlite.Connection, "_conn")


class SqliteSession:
    """`Session` on one aiosqlite connection. Each call is one round trip to aiosqlite's
    thread: a statement is run to its end at once, so no read stays open behind a cursor."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: Statement, params: Params = ()) -> int:
        try:
            cursor = await self._conn.execute(sqlite_text(sql), params)
        except sqlite3.Error as exc:
            raise from_sqlite(exc) from exc
        return cursor.rowcount

    async def execute_many(self, sql: Statement, rows: Iterable[Params]) -> int:
        try:
            cursor = await self._conn.executemany(sqlite_text(sql), rows)
        except sqlite3.Error as exc:
            raise from_sqlite(exc) from exc
        return cursor.rowcount

    async def fetch_one(self, sql: Statement, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]:
        try:
            rows = await self._conn.execute_fetchall(sqlite_text(sql), params)
        except sqlite3.Error as exc:
            raise from_sqlite(exc) from exc
        return list(rows)

    async def fetch_each(self, reads: Sequence[Read]) -> list[list[Row]]:
        if not ONE_TRIP:
            return [await self.fetch_all(sql, params) for sql, params in reads]
        texts = [(sqlite_text(sql), params) for sql, params in reads]
        return await self._on_thread(None, [], fetched_each, texts)

    async def execute_batch(self, steps: Sequence[Step]) -> None:
        if not steps:
            return
        texts = [(sqlite_text(sql), rows) for sql, rows in steps]
        if ONE_TRIP:
            await self._on_thread(None, texts, nothing)
            return
        try:
            for text, rows in texts:
                await self._conn.executemany(text, rows)
        except sqlite3.Error as exc:
            raise from_sqlite(exc) from exc

    async def _on_thread(
        self, begin: str | None, held: Held, last: Callable[..., Returned], *args: Any
    ) -> Returned:
        """One trip to aiosqlite's thread (`on_thread`), its sqlite3 errors as the store's."""
        try:
            result: Returned = await self._conn._execute(  # type: ignore[no-untyped-call]
                on_thread, self._conn, begin, held, last, args
            )
        except sqlite3.Error as exc:
            raise from_sqlite(exc) from exc
        return result


# What runs on aiosqlite's thread, in one trip: `on_thread` with one of the functions below
# as its last step (here and in daemon/store/sqlite_transaction.py).
Held = list[tuple[str, Sequence[Params]]]  # statements' texts, each with its parameters' sets
Returned = TypeVar("Returned")


class NotBegun(Exception):
    """A transaction's BEGIN failed on aiosqlite's thread (the sqlite3 error is its cause)."""


def on_thread(
    conn: aiosqlite.Connection,
    begin: str | None,
    held: Held,
    last: Callable[..., Returned],
    args: tuple[Any, ...],
) -> Returned:
    """On aiosqlite's thread: `begin` (NotBegun if it fails), the held writes, then `last`."""
    raw: sqlite3.Connection = conn._conn
    if begin is not None:
        try:
            raw.execute(begin)
        except sqlite3.Error as exc:
            raise NotBegun() from exc
    for text, rows in held:
        raw.executemany(text, rows)
    return last(raw, *args)


def changed(raw: sqlite3.Connection, text: str, params: Params) -> int:
    return raw.execute(text, params).rowcount


def changed_by_each(raw: sqlite3.Connection, text: str, rows: Iterable[Params]) -> int:
    return raw.executemany(text, rows).rowcount


def fetched(raw: sqlite3.Connection, text: str, params: Params) -> list[Row]:
    return raw.execute(text, params).fetchall()


def fetched_each(raw: sqlite3.Connection, reads: Sequence[tuple[str, Params]]) -> list[list[Row]]:
    return [raw.execute(text, params).fetchall() for text, params in reads]


def nothing(raw: sqlite3.Connection) -> None:
    """What runs after a batch of held writes alone."""


def committed(raw: sqlite3.Connection) -> None:
    raw.execute("COMMIT")


def rolled_back(raw: sqlite3.Connection) -> None:
    if raw.in_transaction:
        raw.execute("ROLLBACK")
