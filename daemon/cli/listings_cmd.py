"""listings add|import|list|show|history|exclude|include|remove."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    EX_DATAERR,
    JSON_OPTION,
    fail,
    fields_or_fail,
    list_command,
    record_command,
    removal_command,
    run,
    spec_or_fail,
)
from daemon.cli.generic import USER_FILTER, list_command_for
from daemon.cli.render import echo_done, echo_json, echo_page, echo_record, echo_table
from daemon.cli.surface import call, surface
from daemon.models import LocalStatus
from daemon.ops.imports import ImportFormat
from daemon.ops.queries import ListingQuery, PageQuery
from daemon.specs import ListingSpec

STATUS_CHOICES = [s.value for s in LocalStatus]
LIST_COLUMNS = [
    "id",
    "connection_id",
    "listing_key",
    "status",
    "mls_standard_status",
    "excluded",
    "last_checked_at",
    "last_error",
]
TRAIL_COLUMNS = [
    "changed_at",
    "event",
    "from_status",
    "to_status",
    "mls_standard_status",
    "mls_status",
    "run_id",
]


@click.group()
def listings() -> None:
    """Manage the listings mls-sync tracks (each is one ListingKey on one MLS connection)."""


@listings.command("add")
@CONFIG_OPTION
@click.argument("listing_id", metavar="ID")
@click.option(
    "--connection",
    "connection_id",
    required=True,
    metavar="ID",
    help="The MLS connection that lists it.",
)
@click.option("--key", "listing_key", required=True, help="Its ListingKey on that MLS.")
@click.option(
    "--status",
    type=click.Choice(STATUS_CHOICES),
    help="Its local status now, if known (the next sync makes it follow the MLS).",
)
@click.option(
    "--user",
    "user_id",
    metavar="ID",
    help="Whose listing it is (a user: `mls-sync users add`). Without it: its connection's user.",
)
@JSON_OPTION
def add(
    config_path: Path | None,
    listing_id: str,
    connection_id: str,
    listing_key: str,
    status: str | None,
    user_id: str | None,
    as_json: bool,
) -> None:
    """Track a listing. An existing ID is re-pointed; its status is left to the MLS."""
    given = {
        "connection_id": connection_id,
        "listing_key": listing_key,
        "status": status,
        "user_id": user_id,
    }
    fields = fields_or_fail(ListingSpec, listing_id, given)
    view, created = call(config_path, lambda ops: ops.listings.put(listing_id, fields))
    echo_done(view, as_json, f"listing {listing_id} {'tracked' if created else 're-pointed'}")


@listings.command("import")
@CONFIG_OPTION
@click.argument("file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "form",
    type=click.Choice(["csv", "jsonl"]),
    help="csv or jsonl (JSON lines). [default: from the file's extension, else csv]",
)
@JSON_OPTION
def import_(config_path: Path | None, file: Path, form: str | None, as_json: bool) -> None:
    """Track many listings from a CSV file with a header row, or from JSON lines:

    \b
      id,connection_id,listing_key[,status][,user_id]
      L-1001,crmls,3yd-CRMLS-A1001,active
    \b
      {"id": "L-1001", "connection_id": "crmls", "listing_key": "3yd-CRMLS-A1001"}

    A row without a user_id is its connection's user's listing. Every row is checked first;
    if any is bad, each problem is printed with its line number and nothing is imported
    (exit 65).
    """
    chosen: ImportFormat = (
        "jsonl" if (form or file.suffix.lstrip(".")) in ("jsonl", "ndjson") else "csv"
    )
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        fail(f"{file}: {exc.strerror}", EX_DATAERR)
    except UnicodeDecodeError:
        fail(f"{file}: not UTF-8 text", EX_DATAERR)
    where = surface(config_path)

    async def main() -> dict[str, Any]:
        async with where.open() as (ops, _):
            return await ops.listings.import_text(text, chosen, values=not where.is_remote)

    done = run(main)
    echo_done(
        done,
        as_json,
        f"{done['rows']} row(s) read, {done['added_or_repointed']} listing(s) added or re-pointed",
    )


list_command_for(
    listings,
    ListingQuery,
    lambda ops, query: ops.listings.list(query),
    LIST_COLUMNS,
    "List tracked listings with their local and MLS status, in id order.",
    click.option("--connection", "connection_id", metavar="ID", help="Only this connection's."),
    click.option(
        "--status", type=click.Choice([*STATUS_CHOICES, "unknown"]), help="Only this status."
    ),
    click.option("--excluded/--included", default=None, help="Only excluded, or only included."),
    click.option("--key-contains", "q", metavar="TEXT", help="Only ListingKeys containing TEXT."),
    USER_FILTER,
)


@listings.command("show")
@record_command("listing_id")
def show(config_path: Path | None, listing_id: str, as_json: bool) -> None:
    """Show a listing and its audit trail (every status change, with the MLS values; the
    first 100: `listings history ID` pages through all)."""
    view = call(config_path, lambda ops: ops.listings.get(listing_id))
    if as_json:
        echo_json(view)
        return
    echo_record(view)
    click.echo("")
    echo_table(view["status_changes"], TRAIL_COLUMNS)


@listings.command("history")
@list_command
@click.argument("listing_id", metavar="ID")
def history(config_path: Path | None, listing_id: str, as_json: bool, **given: Any) -> None:
    """A listing's whole audit trail, oldest first, a page at a time."""
    query = spec_or_fail(PageQuery, given)
    page = call(config_path, lambda ops: ops.listings.history(listing_id, query))
    echo_page(page, TRAIL_COLUMNS, as_json)


def _set_excluded(config_path: Path | None, listing_id: str, excluded: bool, as_json: bool) -> None:
    done = call(config_path, lambda ops: ops.listings.set_excluded(listing_id, excluded))
    said = "excluded from" if excluded else "included in"
    echo_done(done, as_json, f"listing {listing_id} {said} sync")


@listings.command("exclude")
@record_command("listing_id")
def exclude(config_path: Path | None, listing_id: str, as_json: bool) -> None:
    """Leave a listing out of every sync until it is included again (selective sync)."""
    _set_excluded(config_path, listing_id, True, as_json)


@listings.command("include")
@record_command("listing_id")
def include(config_path: Path | None, listing_id: str, as_json: bool) -> None:
    """Sync an excluded listing again from the next cycle."""
    _set_excluded(config_path, listing_id, False, as_json)


@listings.command("remove")
@removal_command(
    "listing_id",
    "Also when posts of the listing are still live: their records are dropped, and "
    "nothing takes them down any more.",
)
def remove(config_path: Path | None, listing_id: str, force: bool, as_json: bool) -> None:
    """Stop tracking a listing (its audit trail is kept)."""
    removed = call(config_path, lambda ops: ops.listings.remove(listing_id, force=force))
    live = removed["live_posts_removed"]
    said = f" with {live} live post(s)" if live else ""
    echo_done(removed, as_json, f"listing {listing_id} removed{said}")
