"""The store's own errors: what callers outside the store catch, whatever the database.

Each driver's errors are translated in one place (`from_sqlite` here), so the daemon's
retries, its 503 with Retry-After and its "try again next pass" are written against these
and not against one driver (docs/postgresql.md, step 1).
"""

from __future__ import annotations

import sqlite3


class StoreError(Exception):
    """A database call failed: the statement, the transaction or the connection."""


class DatabaseBusy(StoreError):
    """Another writer held a lock for longer than the store waits: nothing is wrong with the
    request or the data, and the same call may go through in a moment."""

    def __init__(self, driver_message: str) -> None:
        # One wording on either database, so that logs and alerts need not know which.
        super().__init__(
            f"database is locked: another writer held it past [database] busy_timeout_ms "
            f"({driver_message})"
        )


class DatabaseUnavailable(StoreError):
    """The database server cannot be reached (stopped, restarting, the network down, no
    connection free within the wait): nothing is wrong with the request or the data, and
    the same call may go through once the server is back."""


class IntegrityViolation(StoreError):
    """A constraint refused the write (a key already taken, a row another one points at)."""


def store_error_in(exc: BaseException) -> StoreError | None:
    """The store's error `exc` is, or the first of (nested) exception groups that hold
    nothing else (a task group's way of raising one); None when anything else is in it."""
    if isinstance(exc, StoreError):
        return exc
    if not isinstance(exc, BaseExceptionGroup):
        return None
    matched, rest = exc.split(StoreError)
    if rest is not None or matched is None:
        return None
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, StoreError) else None


_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def from_sqlite(exc: sqlite3.Error) -> StoreError:
    """The store's error for a sqlite3 one, its message kept (SQLite's messages name
    tables and columns, never the values bound to a statement)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityViolation(str(exc))
    # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary code in the low byte.
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY_CODES:
        return DatabaseBusy(str(exc))
    return StoreError(str(exc))


def outage_in(exc: BaseException) -> StoreError | None:
    """The database away or locked past the busy timeout, when that is all `exc` comes to:
    no bug, so the work it cut short is logged as a warning with the driver's reason, not
    as a crash with a traceback (which reads as a bug, and alerts as one)."""
    database = store_error_in(exc)
    return database if isinstance(database, DatabaseUnavailable | DatabaseBusy) else None
