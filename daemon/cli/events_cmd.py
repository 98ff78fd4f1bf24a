"""events list|follow: the event log, as an app reads it (docs/events.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from daemon.cli.common import CONFIG_OPTION, JSON_OPTION, run
from daemon.cli.render import echo_json, echo_table
from daemon.cli.surface import surface
from daemon.enums import EventType
from daemon.ops.queries import DEFAULT_LIMIT, MAX_LIMIT, EventQuery
from daemon.ops.views import View

COLUMNS = ["id", "type", "timestamp", "user_id", "about"]
FOLLOW_WAIT_SECONDS = 30


HELP = (
    "Read the event log: one event per committed change (a status change, a sale, a post taken "
    "down or handed to a person, a connection or account that needs re-authentication, a "
    "finished run), in order, each with an id that only grows.\n\nTypes: " + ", ".join(EventType)
)


@click.group(help=HELP)
def events() -> None:
    pass


def _filters(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--type",
        "types",
        multiple=True,
        metavar="TYPE",
        help="Only these types; a family with `listing.*` (repeat for more).",
    )(f)
    f = click.option("--user", metavar="ID", help="Only this user's events.")(f)
    return click.option(
        "--after",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Start after this event id (the `next_after` of the read before).",
    )(f)


@events.command("list")
@CONFIG_OPTION
@_filters
@click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), default=DEFAULT_LIMIT, show_default=True
)
@click.option(
    "--wait",
    type=click.FloatRange(0, 60),
    default=0,
    help="When there is no event yet, wait up to this many seconds for one.",
)
@JSON_OPTION
def list_(
    config_path: Path | None,
    after: int,
    types: tuple[str, ...],
    user: str | None,
    limit: int,
    wait: float,
    as_json: bool,
) -> None:
    """The events after --after, oldest first. The last line says where the next read
    starts (--json: the answer's `next_after`)."""
    query = _query(after, types, user, limit, wait)
    where = surface(config_path)

    async def main() -> View:
        async with where.open() as (ops, _):
            return await ops.events.feed(query)

    answer = run(main)
    if as_json:
        echo_json(answer)
        return
    echo_table([_row(e) for e in answer["items"]], COLUMNS)
    click.echo(f"next: --after {answer['next_after']}", err=True)


@events.command("follow")
@CONFIG_OPTION
@_filters
def follow(config_path: Path | None, after: int, types: tuple[str, ...], user: str | None) -> None:
    """Print each event as one JSON line as it commits, until Ctrl-C: from --after on (0:
    the whole log kept), with the daemon's --api or this machine's database."""
    query = _query(after, types, user, MAX_LIMIT, FOLLOW_WAIT_SECONDS)
    where = surface(config_path)

    async def main() -> None:
        nonlocal query
        async with where.open() as (ops, _):
            while True:
                answer = await ops.events.feed(query)
                for event in answer["items"]:
                    echo_json(event, compact=True)
                query = query.model_copy(update={"after": answer["next_after"]})

    run(main)


def _query(
    after: int, types: tuple[str, ...], user: str | None, limit: int, wait: float
) -> EventQuery:
    joined = ",".join(types) if types else None
    return EventQuery(after=after, types=joined, user=user, limit=limit, wait=wait)


def _row(event: View) -> View:
    data = event["data"]
    about = next((f"{k} {v.get('id')}" for k, v in data.items() if isinstance(v, dict)), "")
    return {**event, "about": about}
