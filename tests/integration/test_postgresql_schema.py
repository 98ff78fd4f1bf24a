"""The store's schema and statements on a real PostgreSQL server: the same tables and
columns as SQLite's, and every statement of the store one PostgreSQL accepts (parsed and
planned with PREPARE, its parameters' types inferred as they will be when it runs). The
store's tests on both databases run them; this finds a statement no test reaches yet."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import TupleRow

import daemon.store
from daemon.store.dialect import Sql, postgresql_text
from daemon.store.postgres import PostgresDatabase
from daemon.store.sqlite import SqliteDatabase
from tests.postgres_server import PostgresServer

_KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")
_PARAMETER = re.compile(r"%\((\w+)\)s|%s|%%")


def _statements() -> Iterator[tuple[str, str]]:
    """(module.NAME, PostgreSQL text) of each statement a store module holds whole."""
    for info in pkgutil.iter_modules(daemon.store.__path__):
        module = importlib.import_module(f"daemon.store.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Sql | str) and _is_statement(value):
                yield f"{info.name}.{name}", postgresql_text(value)


def _is_statement(sql: Sql | str) -> bool:
    """A whole statement, not a fragment (nor a template, nor prose)."""
    text = sql if isinstance(sql, str) else sql.postgresql
    words = re.sub(r"--[^\n]*", "", text).split()
    return "{" not in text and bool(words) and words[0].upper() in _KINDS


def _numbered(text: str) -> str:
    """psycopg's placeholders as the server's own ($1, $2...), one number per name."""
    numbers: dict[str, int] = {}

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        key = match.group(1) or f"#{len(numbers)}"
        numbers.setdefault(key, len(numbers) + 1)
        return f"${numbers[key]}"

    return _PARAMETER.sub(one, text)


STATEMENTS = sorted(_statements())


@pytest.fixture
async def conn(postgres_server: PostgresServer) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
    url = postgres_server.new_database()
    db = await PostgresDatabase.open(url, password=postgres_server.password)  # migrated
    await db.close()
    async with await psycopg.AsyncConnection.connect(
        url, password=postgres_server.password, autocommit=True
    ) as conn:
        yield conn


def test_the_store_has_statements_to_check() -> None:
    assert len(STATEMENTS) > 100


async def test_postgresql_accepts_every_statement_of_the_store(
    conn: psycopg.AsyncConnection[TupleRow],
) -> None:
    refused = {}
    for n, (name, text) in enumerate(STATEMENTS):
        try:
            await conn.execute(f"PREPARE s{n} AS {_numbered(text)}".encode())
        except psycopg.Error as exc:
            refused[name] = exc.diag.message_primary
    assert refused == {}, "\n".join(f"{k}: {v}" for k, v in sorted(refused.items()))


def _sqlite_columns(path: Path) -> dict[str, list[str]]:
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {t: sorted(r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')) for t in tables}


async def _postgresql_columns(conn: psycopg.AsyncConnection[TupleRow]) -> dict[str, list[str]]:
    cursor = await conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name <> 'mls_sync_schema'"
    )
    found: dict[str, list[str]] = {}
    for table, column in await cursor.fetchall():
        found.setdefault(str(table), []).append(str(column))
    return {t: sorted(c) for t, c in sorted(found.items())}


async def test_both_databases_have_the_same_tables_and_columns_at_the_same_version(
    tmp_path: Path, conn: psycopg.AsyncConnection[TupleRow]
) -> None:
    """A migration added for one database and not the other fails here: its tables, its
    columns, or the rows it makes."""
    sqlite_db = await SqliteDatabase.open(tmp_path / "x.db")
    sqlite_version = await sqlite_db.schema_version()
    await sqlite_db.close()
    cursor = await conn.execute("SELECT version FROM mls_sync_schema")
    assert await cursor.fetchall() == [(sqlite_version,)]
    assert await _postgresql_columns(conn) == _sqlite_columns(tmp_path / "x.db")
    # And the same rows in a new database: the default user, and nothing else.
    seeded = "SELECT id, display_name, email, time_zone, notify_events, notify_mode FROM users"
    with closing(sqlite3.connect(tmp_path / "x.db")) as sqlite_conn:
        sqlite_users = sqlite_conn.execute(seeded).fetchall()
        sqlite_rows = {
            t: sqlite_conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            for t in _sqlite_columns(tmp_path / "x.db")
        }
    assert await (await conn.execute(seeded)).fetchall() == sqlite_users
    for table, count in sqlite_rows.items():
        cursor = await conn.execute(f'SELECT count(*) FROM "{table}"'.encode())
        assert await cursor.fetchall() == [(count,)], table
