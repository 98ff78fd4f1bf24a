"""Every statement of the store is one PostgreSQL accepts: parsed and planned by a real
server (PREPARE), its parameters' types inferred as they will be when it runs. The store's
tests on both databases run them; this finds a statement no test reaches yet."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

import daemon.store
from daemon.store.dialect import Sql, postgresql_text
from daemon.store.postgres import PostgresDatabase
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


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def conn(server: PostgresServer) -> AsyncIterator[psycopg.AsyncConnection[object]]:
    url = server.new_database()
    db = await PostgresDatabase.open(url, password=server.password)  # migrated
    await db.close()
    async with await psycopg.AsyncConnection.connect(
        url, password=server.password, autocommit=True
    ) as conn:
        yield conn


def test_the_store_has_statements_to_check() -> None:
    assert len(STATEMENTS) > 100


async def test_postgresql_accepts_every_statement_of_the_store(
    conn: psycopg.AsyncConnection[object],
) -> None:
    refused = {}
    for n, (name, text) in enumerate(STATEMENTS):
        try:
            await conn.execute(f"PREPARE s{n} AS {_numbered(text)}".encode())
        except psycopg.Error as exc:
            refused[name] = exc.diag.message_primary
    assert refused == {}, "\n".join(f"{k}: {v}" for k, v in sorted(refused.items()))
