"""users add|list|show|remove|sync: who owns connections, listings and accounts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    JSON_OPTION,
    choice_option,
    fields_or_fail,
    progress_printer,
    record_command,
    run,
)
from daemon.cli.generic import list_command_for, show_command_for
from daemon.cli.render import echo_done, echo_environment, echo_json
from daemon.cli.surface import call, echo_saved, surface
from daemon.cli.sync_cmd import followed, print_report
from daemon.enums import EventType, NotifyMode
from daemon.ops.queries import PageQuery
from daemon.specs import UserSpec

LIST_COLUMNS = ["id", "display_name", "email", "time_zone", "notify_mode", "notify_events"]


@click.group()
def users() -> None:
    """Manage users: the people (agents, a brokerage) who own MLS connections, listings and
    platform accounts, and who are told of what happens to them.

    \b
    Everything made before users existed belongs to the user `default`.
      mls-sync users add --id agent-7 --name "Agent Seven" --email agent7@example.com
      mls-sync connections add --id crmls --user agent-7 ...
      mls-sync listings list --user agent-7
      mls-sync users sync agent-7       sync every active connection of agent-7 now
    """


@users.command("add")
@CONFIG_OPTION
@click.option("--id", "id_", required=True, help="The user's id, e.g. agent-7.")
@click.option("--name", "display_name", required=True, help="The name people see.")
@click.option("--email", help="Where notifications go.")
@click.option(
    "--time-zone",
    default="UTC",
    show_default=True,
    help="An IANA name (America/Los_Angeles): when a daily digest goes out.",
)
@click.option(
    "--notify",
    "notify_events",
    multiple=True,
    metavar="EVENT",
    help="An event type to e-mail the user (repeat it), a family (listing.*) or *. The types: "
    + ", ".join(e.value for e in EventType)
    + ".",
)
@choice_option(
    "--notify-mode",
    NotifyMode,
    NotifyMode.IMMEDIATE,
    "A message per event, or one a day.",
)
@JSON_OPTION
def add(config_path: Path | None, id_: str, as_json: bool, **given: Any) -> None:
    """Add a user, or replace the one with the same --id (what is not given takes its
    default: give every option you want kept)."""
    given["notify_events"] = list(given["notify_events"])
    fields = fields_or_fail(UserSpec, id_, given)
    echo_saved("user", id_, call(config_path, lambda ops: ops.users.put(id_, fields)), as_json)


list_command_for(
    users,
    PageQuery,
    lambda ops, query: ops.users.list(query),
    LIST_COLUMNS,
    "List users, in id order.",
)


show_command_for(
    users,
    "user_id",
    lambda ops, user_id: ops.users.get(user_id),
    "Show one user and what they are notified of.",
)


@users.command("remove")
@record_command("user_id")
def remove(config_path: Path | None, user_id: str, as_json: bool) -> None:
    """Remove a user (refused while they own connections, listings or accounts)."""
    removed = call(config_path, lambda ops: ops.users.remove(user_id))
    echo_done(removed, as_json, f"user {user_id} removed")


@users.command("sync")
@record_command("user_id")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
def sync(config_path: Path | None, user_id: str, quiet: bool, as_json: bool) -> None:
    """Sync every active connection of one user now, and print the run's summary.

    Locally it runs in this process; with --api the running daemon runs it (coalesced with
    any request for the same user that has not begun) and this command follows its run to
    the end. A connection another sync holds is skipped with a warning.
    """
    where = surface(config_path)

    async def main() -> dict[str, Any]:
        progress = progress_printer(not quiet and not where.is_remote)
        async with where.open(True, progress) as (ops, environment):
            echo_environment(environment, err=as_json)
            return await followed(ops, await ops.users.sync(user_id, "manual"))

    started = time.monotonic()
    report = run(main)
    if as_json:
        echo_json(report)
    else:
        print_report(report, time.monotonic() - started)
