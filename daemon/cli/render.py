"""How commands print: tables (rich) and records for people, JSON for scripts, and a hint on
stderr when a list is cut."""

from __future__ import annotations

import functools
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from daemon.composition import Environment
from daemon.ops.pages import Page


@functools.cache
def _console() -> Console:
    """Made at the first table, not at import: what it reads of the process (whether stdout
    is a terminal, NO_COLOR, COLUMNS) is the command's, whatever imported this module first.
    Off a terminal, rich would fold tables into 80 columns; a pipe or a file gets whole
    lines."""
    return Console(width=None if sys.stdout.isatty() else 10_000, highlight=False)


def echo_json(data: Any, compact: bool = False) -> None:
    """Indented; `compact`: one line (a stream of JSON lines)."""
    click.echo(json.dumps(data, indent=None if compact else 2, default=str))


def echo_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column.upper(), overflow="fold", no_wrap=not sys.stdout.isatty())
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    _console().print(table)


def echo_record(record: Mapping[str, Any]) -> None:
    width = max(len(k) for k in record)
    for key, value in record.items():
        if isinstance(value, list | dict):
            continue  # nested lists are printed as tables of their own
        click.echo(f"{key.ljust(width)}  {_cell(value)}")


def echo_page(page: Page, columns: Sequence[str], as_json: bool) -> None:
    """A page of a list: a table (or the page as JSON), and on stderr how many there are in
    all and the command that shows the next ones (this one, filters and all, moved on)."""
    if as_json:
        echo_json(page.view())
        return
    echo_table(page.items, columns)
    if page.next_after is not None:
        click.echo(
            f"{len(page.items):,} of {page.total:,} shown; the next ones: "
            f"{next_page_command(sys.argv[1:], page.next_after)}",
            err=True,
        )


def next_page_command(args: Sequence[str], after: str) -> str:
    """The command as it was given, with `--after` set to the next page's cursor."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--after":
            skip = True
        elif not arg.startswith("--after="):
            kept.append(_without_password(arg))
    return shlex.join(["mls-sync", *kept, "--after", after])


def _without_password(arg: str) -> str:
    """An --api URL with `user:password@` in it is repeated without them."""
    if "://" in arg and "@" in arg:
        return str(httpx.URL(arg).copy_with(password=None))
    return arg


def echo_done(view: Mapping[str, Any], as_json: bool, line: str) -> None:
    """What a change did: one line for people, or the record it left as JSON."""
    if as_json:
        echo_json(view)
    else:
        click.echo(line)


def echo_view(view: Mapping[str, Any], as_json: bool) -> None:
    (echo_json if as_json else echo_record)(view)


def echo_environment(environment: Environment | None, err: bool = False) -> None:
    """Says where a command's MLS and platforms are when they are the sandbox's (on stderr
    with --json: stdout holds the JSON alone)."""
    if environment is not None:
        where = ", ".join(f"sandbox {k} at {v}" for k, v in environment.describe().items())
        click.echo(where, err=err)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
