"""The commands every kind of record has, made from what differs: `list` (its query, how to
read a page, its columns) and `show` (how to read one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from daemon.cli.common import list_command, record_command, spec_or_fail
from daemon.cli.render import echo_page, echo_view
from daemon.cli.surface import call
from daemon.ops.manager import Operations
from daemon.ops.pages import Page
from daemon.ops.queries import PageQuery
from daemon.ops.views import View

QueryT = TypeVar("QueryT", bound=PageQuery)
Option = Callable[[Callable[..., Any]], Callable[..., Any]]

# The filter every list of owned records has (connections, listings, accounts, posts).
USER_FILTER: Option = click.option("--user", metavar="ID", help="Only this user's.")


def list_command_for(
    group: click.Group,
    query_type: type[QueryT],
    read: Callable[[Operations, QueryT], Awaitable[Page]],
    columns: list[str],
    doc: str,
    *filters: Option,
) -> None:
    """`<group> list [filters] [--after] [--limit] [--json]`."""

    def list_(config_path: Path | None, as_json: bool, **given: Any) -> None:
        query = spec_or_fail(query_type, given)
        echo_page(call(config_path, lambda ops: read(ops, query)), columns, as_json)

    list_.__doc__ = doc
    command: Callable[..., Any] = list_command(list_)
    for option in reversed(filters):
        command = option(command)
    group.command("list")(command)


def show_command_for(
    group: click.Group, id_name: str, read: Callable[[Operations, str], Awaitable[View]], doc: str
) -> None:
    """`<group> show ID [--json]`."""

    def show(config_path: Path | None, as_json: bool, **given: str) -> None:
        record_id = given[id_name]
        echo_view(call(config_path, lambda ops: read(ops, record_id)), as_json)

    show.__doc__ = doc
    group.command("show")(record_command(id_name)(show))
