"""The database the store runs on: SQLite (the default) or PostgreSQL, behind one interface.

A `Database` hands out `Session`s (daemon/store/session.py): one inside a write transaction,
or one to read. Transactions are short: never held across a network call. Which database
it is shows only in `dialect` and in the statements that differ (daemon/store/dialect.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio

from daemon.store.dialect import Statement
from daemon.store.session import Params, Row, Session
from daemon.timestamps import utcnow

Dialect = Literal["sqlite", "postgresql"]


class SchemaError(Exception):
    """The database cannot be used by this version of mls-sync."""


def newer_schema(current: int, newest: int, elsewhere: str) -> SchemaError:
    """A database migrated by a newer mls-sync; `elsewhere`: how to point at another one."""
    return SchemaError(
        f"the database has schema version {current}, newer than this mls-sync understands "
        f"({newest}). Upgrade mls-sync, or point {elsewhere}."
    )


async def wait_for_turn(
    take: Callable[[], Awaitable[bool]], waiting: Callable[[], None], retry_seconds: float
) -> None:
    """Tries `take` until it returns True, calling `waiting` once if it must wait
    (`Database.alone`)."""
    told = False
    while not await take():
        if not told:
            waiting()
            told = True
        await anyio.sleep(retry_seconds)


def migrations(dialect: Dialect) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of each migration for `dialect`, oldest first. Both
    databases number their migrations alike: PostgreSQL's first is a baseline equal to
    SQLite's schema at that version."""
    folder = resources.files("daemon.store") / "migrations" / dialect
    found = []
    for item in folder.iterdir():
        if item.name.endswith(".sql"):
            version = int(item.name.split("_", 1)[0])
            found.append((version, item.name, item.read_text(encoding="utf-8")))
    return sorted(found)


MIGRATIONS = migrations("sqlite")
SCHEMA_VERSION = MIGRATIONS[-1][0]


class Database(ABC):
    dialect: ClassVar[Dialect]
    # Whether reads that many tasks ask for at once cost less asked for in one go: on SQLite,
    # one trip to its thread for all of them; on PostgreSQL the pool reads them side by side,
    # each on a connection of its own, and in one go they would wait for each other.
    groups_reads: ClassVar[bool] = False
    # How far the database's clock is ahead of this machine's. Lease times are read from
    # `clock()`: daemons on machines whose clocks differ then agree on when a lease expires
    # (docs/postgresql.md "Several daemons"). SQLite is on this machine: none.
    clock_offset: timedelta = timedelta(0)

    def clock(self) -> datetime:
        """Now, by the database's clock."""
        return utcnow() + self.clock_offset

    @abstractmethod
    async def measure_clock(self) -> None:
        """Reads the database's clock again, into `clock_offset`."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Session]:
        """A write transaction: commits when the block ends, rolls back on any exception.
        Write transactions run one at a time, as SQLite's own write lock has them."""

    @abstractmethod
    def reading(self) -> AbstractAsyncContextManager[Session]:
        """Reads that see no other task's open transaction."""

    @abstractmethod
    def reader(self) -> AbstractAsyncContextManager[Database]:
        """A handle for reads beside the writer (the status board, the event watch), for as
        long as the block runs."""

    @abstractmethod
    def alone(self, task: str, waiting: Callable[[], None]) -> AbstractAsyncContextManager[None]:
        """Runs the block while no other process does `task` on this database (the webhook
        deliveries, the mail): waits its turn first, calling `waiting` once if it must. The
        turn ends with the block, or with the process however it ends. StoreError when the
        turn is lost while the block runs (the block is cancelled first)."""

    @abstractmethod
    async def write_one(self, sql: Statement, params: Params) -> int:
        """One statement, atomic on its own; the number of rows it changed."""

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def fetch_one(self, sql: Statement, params: Params = ()) -> Row | None:
        """The first row of a read, or None."""
        async with self.reading() as session:
            return await session.fetch_one(sql, params)

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]:
        async with self.reading() as session:
            return await session.fetch_all(sql, params)


async def open_database(
    path: Path, url: str | None, busy_timeout_ms: int = 5000, password: str | None = None
) -> Database:
    """PostgreSQL at `url` (with `password`) when one is given, else the SQLite file at
    `path`; migrated. SchemaError when it cannot be used."""
    if url is not None:
        from daemon.store.postgres import PostgresDatabase  # only its users load psycopg

        return await PostgresDatabase.open(url, busy_timeout_ms, password)
    from daemon.store.sqlite import SqliteDatabase

    return await SqliteDatabase.open(path, busy_timeout_ms)


async def delete_in_batches(
    db: Database, sql: Statement, params: dict[str, Any], batch: int = 5000
) -> int:
    """Runs a `DELETE ... LIMIT :batch` in a transaction of its own until it deletes fewer
    than `batch` rows (the writer is never held up long); returns how many went."""
    total = 0
    while True:
        async with db.transaction() as session:
            deleted = await session.execute(sql, {**params, "batch": batch})
        total += deleted
        if deleted < batch:
            return total
