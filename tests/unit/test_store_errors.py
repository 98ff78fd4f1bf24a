"""Which database errors are the caller's to send again (busy, unreachable) and which are the
daemon's own: what the API answers 503 with Retry-After, and what a cycle logs without a
traceback."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from daemon.store.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    IntegrityViolation,
    StoreError,
    outage_in,
    store_error_in,
)
from daemon.store.postgres import dead_peer_options, from_psycopg


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (pg_errors.AdminShutdown("terminating connection"), DatabaseUnavailable),
        (pg_errors.CannotConnectNow("the database system is starting up"), DatabaseUnavailable),
        (pg_errors.ConnectionFailure("connection failure"), DatabaseUnavailable),
        (
            psycopg.OperationalError("server closed the connection unexpectedly"),
            DatabaseUnavailable,
        ),
        (PoolTimeout("couldn't get a connection after 10.00 sec"), DatabaseUnavailable),
        (pg_errors.LockNotAvailable("could not obtain lock"), DatabaseBusy),
        (pg_errors.SerializationFailure("could not serialize access"), DatabaseBusy),
        (pg_errors.ProtocolViolation("bind message supplies 2 parameters"), StoreError),
        (pg_errors.UndefinedColumn("column does not exist"), StoreError),
        (pg_errors.UniqueViolation("duplicate key value"), IntegrityViolation),
    ],
)
def test_only_an_unreachable_server_is_said_to_be_unreachable(
    error: psycopg.Error, kind: type[StoreError]
) -> None:
    assert type(from_psycopg(error)) is kind


def test_a_database_error_is_found_inside_task_groups_only_when_nothing_else_is_there() -> None:
    gone = DatabaseUnavailable("couldn't get a connection after 10.00 sec")
    assert store_error_in(gone) is gone
    assert store_error_in(ExceptionGroup("run", [ExceptionGroup("connection", [gone])])) is gone
    assert store_error_in(ExceptionGroup("run", [gone, ValueError("a bug")])) is None
    assert store_error_in(ValueError("a bug")) is None


def test_a_connection_gives_up_on_a_silent_server_unless_the_url_says_otherwise() -> None:
    """Every connection carries libpq's options for a server gone without a word (a connect
    timeout, tcp_user_timeout, keepalives); one the operator put in the URL is theirs."""
    options = dead_peer_options("postgresql://mls_sync@db.internal/mls?keepalives_idle=60")
    assert options == {
        "connect_timeout": 10,
        "tcp_user_timeout": 10_000,
        "keepalives": 1,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    assert "connect_timeout" not in dead_peer_options("host=db connect_timeout=3")


def test_only_the_database_away_or_locked_is_logged_as_an_outage_not_as_a_bug() -> None:
    away = DatabaseUnavailable("the server is gone")
    locked = DatabaseBusy("held by another writer")
    assert outage_in(away) is away
    assert outage_in(locked) is locked
    assert outage_in(ExceptionGroup("a task group", [ExceptionGroup("nested", [away])])) is away
    assert outage_in(IntegrityViolation("a key already taken")) is None  # a bug of ours
    assert outage_in(ExceptionGroup("both", [away, ValueError("a bug")])) is None
    assert outage_in(ValueError("a bug")) is None
