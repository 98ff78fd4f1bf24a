"""SQL text per database: one statement, written once where both databases accept it.

The store's statements are SQLite's, with parameters as `:name` or `?`. Where PostgreSQL
accepts the same text, that text runs on both: only its parameters are spelt again for
psycopg (`%(name)s`, `%s`), by `for_psycopg`. Where the two differ (JSON lists, the schema's
own bookkeeping), a statement is a `Sql` holding both texts, side by side in the module
that runs it (docs/postgresql.md says which constructs differ and why).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Sql:
    """One statement whose text differs by database; both take the same parameters."""

    sqlite: str
    postgresql: str


Statement = str | Sql

# What `for_psycopg` must step over whole: string literals, quoted names and comments (a
# `:` or `?` inside them is not a parameter), and `::` casts. Then the parameters, and `%`,
# which psycopg reads as the start of one everywhere, literals included.
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|::|:(\w+)|\?|%""")


def _respelt(match: re.Match[str]) -> str:
    text = match.group(0)
    if match.group(1) is not None:
        return f"%({match.group(1)})s"
    if text == "?":
        return "%s"
    return text.replace("%", "%%")


@functools.cache
def for_psycopg(sql: str) -> str:
    """`sql` with its parameters as psycopg spells them (once per statement text)."""
    return _TOKENS.sub(_respelt, sql)


def sqlite_text(sql: Statement) -> str:
    return sql if isinstance(sql, str) else sql.sqlite


def postgresql_text(sql: Statement) -> str:
    return for_psycopg(sql if isinstance(sql, str) else sql.postgresql)


def both(template: str, **fragments: Sql) -> Sql:
    """A statement written once around `{name}` fragments that differ by database."""
    return Sql(
        template.format(**{name: f.sqlite for name, f in fragments.items()}),
        template.format(**{name: f.postgresql for name, f in fragments.items()}),
    )


def json_values(parameter: str, as_type: str | None = None) -> Sql:
    """The values of a JSON list bound as one parameter (any number of ids in one
    statement), as the rows of a subquery; `as_type` (`bigint`) for a list of numbers, which
    PostgreSQL does not compare with text."""
    value = f"CAST(value AS {as_type})" if as_type else "value"
    return Sql(
        f"SELECT value FROM json_each({parameter})",
        f"SELECT {value} FROM json_array_elements_text(CAST({parameter} AS json)) AS value",
    )


def json_objects(sqlite: str) -> Sql:
    """A statement that builds JSON with SQLite's json_object, which PostgreSQL calls
    json_build_object (same arguments; parameters in it need a CAST on PostgreSQL)."""
    return Sql(sqlite, sqlite.replace("json_object(", "json_build_object("))


# The smallest of several values: SQLite's scalar min(a, b, ...), PostgreSQL's LEAST (which,
# unlike min, skips NULLs: give it none).
LEAST = Sql("min", "LEAST")


def unindexed(column: str) -> Sql:
    """`column`, with SQLite told not to drive the statement by its index (`+column`): where
    its planner would otherwise pick a worse index. PostgreSQL plans by its statistics."""
    return Sql(f"+{column}", column)


def json_rows(columns: str, source: str, **fragments: Sql) -> Sql:
    """`SELECT columns source` (a FROM clause and what follows it) as one row holding one
    JSON list of the rows, each a list of `columns`' values, in no particular order; read
    it with `rows_of_json`. `{name}` fragments as `both` takes them. For reads of many rows
    on the sync's path: SQLite's module lets go of the interpreter's lock at each row it
    steps through, and takes it back to build the row, which costs both threads dearly
    while the event loop is busy; one row is one step (docs/benchmarks.md "The HTTP
    engine")."""
    return both(
        "SELECT {aggregate}(" + f"{{array}}({columns})) {source}",
        aggregate=Sql("json_group_array", "json_agg"),
        array=Sql("json_array", "json_build_array"),
        **fragments,
    )


def rows_read(found: Sequence[Any]) -> list[list[Any]]:
    """The rows a `json_rows` statement read, from the rows `Session.fetch_all` gave."""
    return rows_of_json(found[0][0] if found else None)


def rows_of_json(value: Any) -> list[list[Any]]:
    """The rows a `json_rows` statement read: SQLite hands back its text, psycopg the list it
    read from it already, or None for no rows."""
    if value is None:
        return []
    rows = json.loads(value) if isinstance(value, str) else value
    assert isinstance(rows, list)
    return rows
