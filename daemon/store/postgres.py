"""The store on PostgreSQL: a psycopg 3 pool behind the store's `Database` and `Session`.

It keeps the guarantees the store was written against on SQLite (docs/postgresql.md):

- **One writer at a time.** Every write transaction first takes one transaction-scoped
  advisory lock, as SQLite's `BEGIN IMMEDIATE` takes its write lock. So event ids are issued
  in commit order (readers that move past an id never skip a later commit), and a fence
  read inside a transaction cannot be overtaken by another process before it commits.
- **Reads see committed data only**, and a `reading()` block one snapshot (repeatable read).
- **A lock wait is bounded** by `busy_timeout_ms` (`lock_timeout`), and ends as the store's
  `DatabaseBusy`, as SQLite's busy timeout does.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from decimal import Decimal
from typing import Any

import anyio
import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import RowMaker
from psycopg.types.numeric import NumericLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from daemon.store.database import (
    Database,
    SchemaError,
    migrations,
    newer_schema,
    wait_for_turn,
)
from daemon.store.dialect import Statement, postgresql_text
from daemon.store.errors import DatabaseBusy, DatabaseUnavailable, IntegrityViolation, StoreError
from daemon.store.session import Params, Read, Row, Session, Step
from daemon.timestamps import utcnow

log = structlog.get_logger("mls_sync.store")

MIGRATIONS = migrations("postgresql")
# The advisory lock keys (any two numbers of our own; the lock is per database): the one
# writer, and the one migrator.
WRITE_LOCK = 0x6D6C_7377  # "mlsw"
MIGRATE_LOCK = 0x6D6C_736D  # "mlsm"
POOL_SIZE = 8
CONNECT_SECONDS = 10.0
# A BEGIN or ROLLBACK takes milliseconds, a COMMIT a little longer (longer still when it waits
# for a synchronous standby); one that waits this long has a server that stopped answering
# without closing the connection (a frozen VM or process, a cut network).
END_SECONDS = 10.0
# A difference of this machine's clock from the server's worth a warning: leases go by the
# server's, but the logs and what the daemon shows go by this machine's too.
CLOCK_WARNING_SECONDS = 1.0
CLOCK_SAMPLES = 3
VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS mls_sync_schema (
    one     integer PRIMARY KEY CHECK (one = 1),
    version integer NOT NULL
)
"""

# A transaction begun and not ended on a connection (in it, or failed in it).
_OPEN = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)
# Busy: another session held a lock past lock_timeout, or a transaction lost a race that
# the same call wins when tried again.
_BUSY = (pg_errors.LockNotAvailable, pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


def from_psycopg(exc: psycopg.Error) -> StoreError:
    """The store's error for a psycopg one. Only the primary message is kept: PostgreSQL's
    DETAIL can quote the values of a row (`Key (id)=(...) already exists`)."""
    primary = exc.diag.message_primary or _client_side(exc)
    message = f"{primary} (SQLSTATE {exc.sqlstate})" if exc.sqlstate else primary
    if isinstance(exc, psycopg.IntegrityError):
        return IntegrityViolation(message)
    if isinstance(exc, _BUSY):
        return DatabaseBusy(message)
    if _unreachable(exc):
        return DatabaseUnavailable(message)
    return StoreError(message)


# SQLSTATE class 08 (connection exceptions) but a protocol violation (08P01: a bug of the
# client's, not the server's absence), and a server shutting down or starting up.
_GONE_CLASS = "08"
_NOT_GONE = "08P01"
_SHUTTING_DOWN = ("57P01", "57P02", "57P03")


def _unreachable(exc: psycopg.Error) -> bool:
    """Whether the server could not be reached, went away or had no connection to give: no
    server sent the error (a refused or broken connection, the pool's wait for a connection
    running out), or the server said it is shutting down or not yet up."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    if state is None:
        return True
    gone = state.startswith(_GONE_CLASS) and state != _NOT_GONE
    return gone or state in _SHUTTING_DOWN


def _client_side(exc: psycopg.Error) -> str:
    """An error no server sent (a refused connection, the pool's wait running out): libpq's
    or the pool's own words, which name hosts and ports, never values."""
    if exc.sqlstate is None:
        return " ".join(str(exc).split()) or type(exc).__name__
    return type(exc).__name__


class PgRow:
    """A row by column name or position, as sqlite3.Row reads (the `Row` protocol)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str, /) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return tuple(self._values) == (tuple(other) if isinstance(other, PgRow) else other)

    __hash__ = None  # type: ignore[assignment]  # as a list: rows are compared, not hashed

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def _pg_rows(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[PgRow]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, index)


class _WholeNumbers(NumericLoader):
    """`numeric` as an int when it is whole (what `sum` of integers gives on PostgreSQL,
    where SQLite gives an integer), else a float; never a Decimal the callers do not expect."""

    def load(self, data: Any) -> Any:
        value = super().load(data)
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value


class PgSession:
    """`Session` on one pooled psycopg connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: psycopg.AsyncConnection[PgRow]) -> None:
        self._conn = conn

    async def execute(self, sql: Statement, params: Params = ()) -> int:
        try:
            cursor = await self._conn.execute(postgresql_text(sql), params)
        except psycopg.Error as exc:
            raise from_psycopg(exc) from exc
        return max(cursor.rowcount, 0)

    async def execute_many(self, sql: Statement, rows: Iterable[Params]) -> int:
        try:
            async with self._conn.cursor() as cursor:
                await cursor.executemany(postgresql_text(sql), list(rows))
                return max(cursor.rowcount, 0)
        except psycopg.Error as exc:
            raise from_psycopg(exc) from exc

    async def fetch_one(self, sql: Statement, params: Params = ()) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]:
        try:
            cursor = await self._conn.execute(postgresql_text(sql), params)
            return list(await cursor.fetchall())
        except psycopg.Error as exc:
            raise from_psycopg(exc) from exc

    async def fetch_each(self, reads: Sequence[Read]) -> list[list[Row]]:
        # In psycopg's pipeline mode: the reads go to the server together, one round trip
        # for all of them, as one trip to its thread on SQLite.
        try:
            async with self._conn.pipeline():
                cursors = [await self._conn.execute(postgresql_text(q), p) for q, p in reads]
            return [list(await cursor.fetchall()) for cursor in cursors]
        except psycopg.Error as exc:
            raise from_psycopg(exc) from exc

    async def execute_batch(self, steps: Sequence[Step]) -> None:
        for sql, rows in steps:  # each a round trip to the server, as before
            await self.execute_many(sql, rows)


CHECK_WHAT = (
    "check [database] url (host, port, database, user) and the password "
    "(MLS_SYNC_DATABASE_PASSWORD, or the systemd credential database-password)"
)


def dead_peer_options(url: str) -> dict[str, Any]:
    """libpq's options for a server that goes away without a word (a VM gone, a network cut:
    no reset ever comes): a connection attempt gives up after CONNECT_SECONDS (the pool's
    own would wait libpq's default, over two minutes); data the server's machine does not
    acknowledge for as long ends the connection (`tcp_user_timeout`), during any statement;
    and an idle connection is probed (TCP keepalives) so a dead one is found before it is
    used. What the URL sets itself is left as it is."""
    given = conninfo_to_dict(url)
    wanted = {
        "connect_timeout": int(CONNECT_SECONDS),
        "tcp_user_timeout": int(CONNECT_SECONDS * 1000),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    return {name: value for name, value in wanted.items() if name not in given}


async def _first_connection(url: str, kwargs: dict[str, Any]) -> None:
    """One connection before the pool's: its failure is said at once, with the server's
    reason (the pool would only retry, quietly, until its timeout)."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, **kwargs)
    except psycopg.Error as exc:
        # libpq's reason names the host, the port and the user, never the password.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SchemaError(f"cannot connect to PostgreSQL: {reason}; {CHECK_WHAT}") from None
    await conn.close()


# `alone`: the advisory locks' first key (the second is the task's); a pair of 32-bit keys
# never meets the single 64-bit key of the write lock.
TASK_LOCKS = 0x6D6C_7374  # "mlst"
TURN_RETRY_SECONDS = 1.0
TURN_CHECK_SECONDS = 5.0


# A session the server ends when its client has gone quiet while holding a lock: a daemon
# frozen (a VM paused, a process stopped) still answers TCP for its connections, so nothing
# else would end them, and every other daemon would wait for its write lock or its task
# (docs/postgresql.md "A daemon that freezes"). In a transaction, the daemon never leaves a
# gap of more than a fraction of a second between statements; a task's connection says
# `SELECT 1` every TURN_CHECK_SECONDS.
IDLE_IN_TRANSACTION_SECONDS = 10
TASK_IDLE_SECONDS = 4 * TURN_CHECK_SECONDS
# The server's own probes of a client machine that is gone without a word, in the same
# measure as libpq's of the server (dead_peer_options): a dead VM frees its locks in about
# 25 seconds, not the two hours of the kernel's defaults.
SERVER_PROBES = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
}
USER_TIMEOUT_MS = int(CONNECT_SECONDS * 1000)  # `tcp_user_timeout`: PostgreSQL 12 and later


async def _end_when_frozen(conn: psycopg.AsyncConnection[Any], idle_in_transaction: bool) -> None:
    """Asks the server to end this session if its client goes quiet while it holds a lock:
    in a transaction (the pool's connections), or at all (a task's own connection; from
    PostgreSQL 14, which has `idle_session_timeout`)."""
    settings: dict[str, int] = dict(SERVER_PROBES)
    if conn.info.server_version >= 120000:
        settings["tcp_user_timeout"] = USER_TIMEOUT_MS
    if idle_in_transaction:
        settings["idle_in_transaction_session_timeout"] = IDLE_IN_TRANSACTION_SECONDS * 1000
    elif conn.info.server_version >= 140000:
        settings["idle_session_timeout"] = int(TASK_IDLE_SECONDS * 1000)
    try:
        for name, value in settings.items():
            await conn.execute(f"SET {name} = {int(value)}")
    except psycopg.Error as exc:
        raise from_psycopg(exc) from exc


async def _took(conn: psycopg.AsyncConnection[Any], key: int) -> bool:
    try:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (TASK_LOCKS, _int4(key)))
        row = await cursor.fetchone()
    except psycopg.Error as exc:
        raise from_psycopg(exc) from exc
    return bool(row and row[0])


def _int4(value: int) -> int:
    """A crc32 (unsigned) as the signed 32-bit key PostgreSQL takes."""
    return value - (1 << 32) if value >= 1 << 31 else value


async def _watch_turn(
    conn: psycopg.AsyncConnection[Any], block: anyio.CancelScope, lost: list[StoreError]
) -> None:
    while True:
        await anyio.sleep(TURN_CHECK_SECONDS)
        try:
            with anyio.fail_after(CONNECT_SECONDS):  # a server gone silent, not just closed
                await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError) as exc:
            lost.append(
                DatabaseUnavailable(f"lost the database connection that held this task: {exc}")
            )
            block.cancel()
            return


async def _end(conn: psycopg.AsyncConnection[Any], statement: str) -> None:
    """A transaction's BEGIN, COMMIT or ROLLBACK. Shielded: a cancel must not leave the pooled
    connection inside a transaction. Yet bounded: a server that stopped answering without
    closing the connection would hold it for ever, and with it the daemon's stop (until
    systemd's SIGKILL). Past END_SECONDS the statement is cancelled, its connection closed
    (by psycopg, or by the pool, which drops a connection returned mid-statement), and the
    caller learns the database is unavailable: whether a COMMIT so cut short landed is
    unknown, as when a connection breaks during one, and the work is done again from what
    the database holds."""
    try:
        with anyio.fail_after(END_SECONDS, shield=True):
            await conn.execute(statement)
    except TimeoutError:
        raise DatabaseUnavailable(
            f"the database did not answer a {statement.split()[0]} within {END_SECONDS:.0f} s; "
            "its connection was closed"
        ) from None


async def _wait_for_migrators(session: Session) -> None:
    """The migrators' lock, waited for as long as another daemon's migration takes (not the
    busy timeout: a start must not fail behind a long migration)."""
    await session.execute("SET LOCAL lock_timeout = 0")
    await session.execute(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[PgRow]],
        url: str,
        connect_kwargs: dict[str, Any],
        busy_timeout_ms: int = 5000,
    ) -> None:
        self._pool = pool
        self._url = url
        self._connect_kwargs = connect_kwargs
        # One write transaction of this process at a time waits for the database's write
        # lock; the others wait here, holding no pooled connection, for as long as a lock
        # is waited for: while the server is away, each writer ahead of them may wait up to
        # CONNECT_SECONDS for a connection, one after the other.
        self._write_turn = asyncio.Lock()
        self._busy_timeout_ms = busy_timeout_ms

    @classmethod
    async def open(
        cls, url: str, busy_timeout_ms: int = 5000, password: str | None = None
    ) -> PostgresDatabase:
        """Connects (a pool), and migrates the schema; SchemaError when it cannot."""

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            conn.adapters.register_loader("numeric", _WholeNumbers)
            await conn.execute(f"SET lock_timeout = {int(busy_timeout_ms)}")
            await _end_when_frozen(conn, idle_in_transaction=True)

        kwargs: dict[str, Any] = {
            "autocommit": True,
            "row_factory": _pg_rows,
            **dead_peer_options(url),
        }
        if password is not None:
            kwargs["password"] = password
        await _first_connection(url, kwargs)
        pool: AsyncConnectionPool[psycopg.AsyncConnection[PgRow]] = AsyncConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            configure=configure,
            name="mls-sync",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_SECONDS)
        except PoolTimeout:
            await pool.close()
            raise SchemaError(
                f"cannot connect to PostgreSQL within {CONNECT_SECONDS:.0f} s: {CHECK_WHAT}"
            ) from None
        db = cls(pool, url, kwargs, busy_timeout_ms)
        try:
            await db._migrate()
            await db.measure_clock()
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._pool.close()

    async def measure_clock(self) -> None:
        """The server's clock against this machine's, the round trip's middle taken as the
        moment the server read it: timed on a connection already taken (a wait for the pool
        would count as a difference), the fastest of a few round trips."""
        samples = []
        async with self.reading() as conn:
            for _ in range(CLOCK_SAMPLES):
                before = utcnow()
                row = await conn.fetch_one("SELECT clock_timestamp()")
                after = utcnow()
                assert row is not None
                samples.append((after - before, row[0] - (before + (after - before) / 2)))
        offset = min(samples)[1]
        self.clock_offset = offset
        if abs(offset.total_seconds()) > CLOCK_WARNING_SECONDS:
            log.warning(
                "clock_differs_from_database",
                seconds=round(offset.total_seconds(), 3),
                hint="leases go by the database server's clock; keep this machine's clock in "
                "step (chrony, systemd-timesyncd) for its logs and times to agree",
            )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[PgRow]]:
        try:  # the pool's own failures too (no server within its timeout), as the store's
            # Bounded like a first connection: while the server is down the pool has no
            # connection to give, and its own default wait (30 s) would hold an API caller
            # past its own timeout, where an answer to send again later helps it.
            conn = await self._pool.getconn(timeout=CONNECT_SECONDS)
        except psycopg.Error as exc:
            raise from_psycopg(exc) from exc
        try:
            yield conn
        finally:
            with anyio.CancelScope(shield=True):
                await self._pool.putconn(conn)

    @asynccontextmanager
    async def _begun(
        self, conn: psycopg.AsyncConnection[PgRow], begin: str
    ) -> AsyncIterator[PgSession]:
        """`begin` ... COMMIT, rolled back on any exception (see `_end`)."""
        try:
            await _end(conn, begin)
            try:
                yield PgSession(conn)
            except BaseException:
                # Only a transaction still open is rolled back, and a failure to do so never
                # takes the place of what is leaving (a cancel, above all): the pool drops a
                # connection left broken.
                if conn.info.transaction_status in _OPEN:
                    with suppress(psycopg.Error, DatabaseUnavailable):
                        await _end(conn, "ROLLBACK")
                raise
            await _end(conn, "COMMIT")
        except psycopg.Error as exc:
            raise from_psycopg(exc) from exc

    @asynccontextmanager
    async def _turn_to_write(self) -> AsyncIterator[None]:
        try:
            with anyio.fail_after(self._busy_timeout_ms / 1000):
                await self._write_turn.acquire()
        except TimeoutError:
            raise DatabaseBusy(
                "this process's own writes ahead of this one took longer; "
                "the database may be unreachable"
            ) from None
        try:
            yield
        finally:
            self._write_turn.release()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with (
            self._turn_to_write(),
            self._connection() as conn,
            self._begun(conn, "BEGIN") as s,
        ):
            await s.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            yield s

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Session]:
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        async with self._connection() as conn, self._begun(conn, begin) as session:
            yield session

    @asynccontextmanager
    async def alone(self, task: str, waiting: Callable[[], None]) -> AsyncIterator[None]:
        """A session-level advisory lock, on a connection of its own (not the pool's): the
        server frees it when that connection ends, so a daemon that dies, or loses the
        database, gives the task up to another. The connection is checked every few
        seconds while the block runs; lost, the block is cancelled and StoreError raised."""
        key = zlib.crc32(task.encode())
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise from_psycopg(exc) from exc
        try:
            await _end_when_frozen(conn, idle_in_transaction=False)
            await wait_for_turn(lambda: _took(conn, key), waiting, TURN_RETRY_SECONDS)
            lost: list[StoreError] = []
            async with anyio.create_task_group() as watch:
                watch.start_soon(_watch_turn, conn, watch.cancel_scope, lost)
                yield
                watch.cancel_scope.cancel()
            if lost:
                raise lost[0]
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Database]:
        """The pool itself: its reads already run beside the writer."""
        yield self

    async def write_one(self, sql: Statement, params: Params) -> int:
        async with self.transaction() as session:
            return await session.execute(sql, params)

    async def fetch_one(self, sql: Statement, params: Params = ()) -> Row | None:
        async with self._connection() as conn:  # one statement: its own snapshot
            return await PgSession(conn).fetch_one(sql, params)

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]:
        async with self._connection() as conn:
            return await PgSession(conn).fetch_all(sql, params)

    async def schema_version(self) -> int:
        async with self._connection() as conn:
            row = await PgSession(conn).fetch_one("SELECT version FROM mls_sync_schema")
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        """Each migration in a transaction of its own (PostgreSQL's DDL is transactional),
        one process at a time: daemons started together do not race."""
        newest = MIGRATIONS[-1][0]
        async with self._connection() as conn:
            try:  # under the migrators' lock: two first starts would both create the table
                async with self._begun(conn, "BEGIN") as session:
                    await _wait_for_migrators(session)
                    await session.execute(VERSION_TABLE)
            except StoreError as exc:
                raise SchemaError(f"cannot prepare the schema: {exc}") from None
            for version, name, sql in MIGRATIONS:
                try:
                    async with self._begun(conn, "BEGIN") as session:
                        await _wait_for_migrators(session)
                        row = await session.fetch_one("SELECT version FROM mls_sync_schema")
                        current = int(row[0]) if row else 0
                        if current > newest:
                            raise newer_schema(
                                current, newest, "[database] url at another database"
                            )
                        if version <= current:
                            continue
                        await conn.execute(sql.encode())  # several statements, no parameters
                        await session.execute(
                            "INSERT INTO mls_sync_schema (one, version) VALUES (1, ?) "
                            "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                            (version,),
                        )
                except StoreError as exc:
                    raise SchemaError(f"migration {name} failed: {exc}") from None
