"""The store on a SQLite file: pragmas, schema migrations, and one lock for every statement.

aiosqlite runs one sqlite3 connection on one thread. Several coroutines share it, so a
transaction must not interleave with another coroutine's statements: every use goes through
`SqliteDatabase.lock`, and transactions are short (never held across a network call).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import anyio
import structlog

from daemon.state_dir import create_private_file
from daemon.store.database import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Database,
    SchemaError,
    newer_schema,
    wait_for_turn,
)
from daemon.store.dialect import Statement
from daemon.store.errors import from_sqlite
from daemon.store.session import ONE_TRIP, Params, Session, SqliteSession
from daemon.store.sqlite_transaction import SqliteTransaction

log = structlog.get_logger("mls_sync.store")


def _read_only_uri(path: Path) -> str:
    # A URI, so that any character in the path is escaped and mode=ro can be given.
    return f"{Path(os.path.abspath(path)).as_uri()}?mode=ro"


# How often a process waiting for its turn at a task (`alone`) asks again: a restarted
# webhook process waits for the old one's last records, no longer.
TURN_RETRY_SECONDS = 0.2


class SqliteDatabase(Database):
    dialect = "sqlite"
    groups_reads = True

    def __init__(self, conn: aiosqlite.Connection, path: Path, busy_timeout_ms: int) -> None:
        self.conn = conn
        self.path = path
        self.lock = asyncio.Lock()
        self._busy_timeout_ms = busy_timeout_ms
        self._session = SqliteSession(conn)

    @classmethod
    async def open(cls, path: Path, busy_timeout_ms: int = 5000) -> SqliteDatabase:
        """Opens (creating if needed, owner-only) and migrates the database; StatePathError
        when its file or folder cannot be created."""
        # Owner-only before SQLite creates it, so secrets are never world-readable. (A quick
        # local call at start; not worth a thread.)
        create_private_file(path)
        try:
            # Shielded, as every close is: a cancel half-way through would leave aiosqlite's
            # thread running after the event loop is gone (Ctrl-C or SIGTERM at start-up).
            with anyio.CancelScope(shield=True):
                conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise SchemaError(f"{path}: cannot open the database: {exc}") from None
        conn.row_factory = aiosqlite.Row
        if not ONE_TRIP:
            log.warning(
                "sqlite_batches_slower",
                note="this aiosqlite runs no function of ours on its thread: each write of a "
                "group makes its own trip (slower, the same writes); install the aiosqlite "
                "pyproject.toml asks for",
            )
        db = cls(conn, path, busy_timeout_ms)
        try:
            await db._configure(busy_timeout_ms)
            await db._migrate()
        except BaseException:
            await db.close()
            raise
        return db

    @classmethod
    async def open_reader(cls, path: Path, busy_timeout_ms: int = 5000) -> SqliteDatabase:
        """A second, read-only connection to a database `open` has prepared. In WAL mode it
        reads beside the writer instead of waiting for the writer's lock."""
        try:
            with anyio.CancelScope(shield=True):  # as in `open`
                conn = await aiosqlite.connect(_read_only_uri(path), uri=True, isolation_level=None)
                await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        except sqlite3.Error as exc:
            raise SchemaError(f"{path}: cannot open the database to read: {exc}") from None
        conn.row_factory = aiosqlite.Row
        return cls(conn, path, busy_timeout_ms)

    async def measure_clock(self) -> None:
        """The file is on this machine: its clock is this machine's."""

    async def close(self) -> None:
        # Finishes even in a cancelled scope (a command cut by Ctrl-C or SIGTERM closes on
        # the way out): else aiosqlite's thread outlives the event loop.
        with anyio.CancelScope(shield=True):
            await self.conn.close()

    async def _configure(self, busy_timeout_ms: int) -> None:
        try:
            await self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await self.conn.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the
            # last transactions, and never corrupts the file.
            await self.conn.execute("PRAGMA synchronous = NORMAL")
            await self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise SchemaError(f"{self.path}: not a usable SQLite database: {exc}") from None

    async def schema_version(self) -> int:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        current = await self.schema_version()
        if current > SCHEMA_VERSION:
            error = newer_schema(current, SCHEMA_VERSION, "[database] path at another file")
            raise SchemaError(f"{self.path}: {error}")
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            # One transaction per migration: a crash leaves the previous version intact. With
            # foreign keys off while it runs, as SQLite's procedure for rebuilding a table
            # asks (a dropped parent table would count its children as violations for good),
            # and every key checked before it commits.
            await self.conn.execute("PRAGMA foreign_keys = OFF")
            try:
                await self.conn.executescript(f"BEGIN IMMEDIATE;\n{sql}")
                broken = list(await self.conn.execute_fetchall("PRAGMA foreign_key_check"))
                if broken:
                    tables = ", ".join(sorted({str(row[0]) for row in broken}))
                    raise sqlite3.IntegrityError(
                        f"it leaves {len(broken)} row(s) of {tables} whose foreign key finds "
                        "no row (PRAGMA foreign_key_check lists them)"
                    )
                await self.conn.execute(f"PRAGMA user_version = {version}")
                await self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    await self.conn.execute("ROLLBACK")
                raise SchemaError(f"{self.path}: migration {name} failed: {exc}") from None
            finally:
                await self.conn.execute("PRAGMA foreign_keys = ON")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        """BEGIN IMMEDIATE ... COMMIT under the lock; rolls back on any exception. The BEGIN
        goes to the database thread with the first statement, and the COMMIT with the held
        writes (`SqliteTransaction`), where this aiosqlite allows it."""
        if not ONE_TRIP:
            async with self._transaction_in_own_trips() as session:
                yield session
            return
        async with self.lock:
            session = SqliteTransaction(self.conn, "BEGIN IMMEDIATE")
            try:
                yield session
            except BaseException:
                # Shielded: under anyio a cancelled scope would cancel this await too, and
                # leave the transaction open for the next user of the connection. It also
                # rolls back a BEGIN a cancelled statement left running on the thread.
                with anyio.CancelScope(shield=True):
                    await session.rollback()
                raise
            # Shielded, as the COMMIT was: once the body is done its work must land or be
            # undone, not be left open by a cancel; busy_timeout bounds the wait.
            with anyio.CancelScope(shield=True):
                try:
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise

    @asynccontextmanager
    async def _transaction_in_own_trips(self) -> AsyncIterator[Session]:
        """`transaction` on an aiosqlite that runs no function of ours: BEGIN and COMMIT each
        a trip of their own."""
        async with self.lock:
            # Shielded (busy_timeout bounds it): a cancel here would abandon the await while
            # the database thread still runs the BEGIN, leaving the shared connection inside a
            # transaction. Once it has begun, a cancel lands in the body and rolls back.
            with anyio.CancelScope(shield=True):
                await self._control("BEGIN IMMEDIATE")
            try:
                yield self._session
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._control("ROLLBACK")
                raise
            else:
                with anyio.CancelScope(shield=True):
                    await self._control("COMMIT")

    async def _control(self, statement: str) -> None:
        try:
            await self.conn.execute(statement)
        except sqlite3.Error as exc:
            raise from_sqlite(exc) from exc

    async def write_one(self, sql: Statement, params: Params) -> int:
        """One statement, atomic on its own (SQLite wraps it in a transaction of its own):
        one round trip to the database thread instead of a transaction's two. Returns
        the number of rows it changed."""
        async with self.lock:
            return await self._session.execute(sql, params)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Session]:
        """Reads under the lock, so they never see another coroutine's open transaction."""
        async with self.lock:
            yield self._session

    @asynccontextmanager
    async def alone(self, task: str, waiting: Callable[[], None]) -> AsyncIterator[None]:
        """An exclusive `flock` on `<database file>.<task>.lock`: the system frees it when the
        process ends, however it ends. One host only, as the file is."""
        path = self.path.with_name(f"{self.path.name}.{task}.lock")
        create_private_file(path)
        fd = os.open(path, os.O_RDWR)
        try:

            async def take() -> bool:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            await wait_for_turn(take, waiting, TURN_RETRY_SECONDS)
            yield
        finally:
            os.close(fd)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Database]:
        """A second, read-only connection (`open_reader`), closed on the way out."""
        db = await SqliteDatabase.open_reader(self.path, self._busy_timeout_ms)
        try:
            yield db
        finally:
            await db.close()
