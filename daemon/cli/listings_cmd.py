"""listings add|import|list|show|exclude|include."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    EX_DATAERR,
    JSON_OPTION,
    echo_json,
    echo_record,
    echo_rows,
    echo_table,
    fail,
    run,
    settings_from,
    spec_or_fail,
)
from daemon.models import LocalStatus, is_publishable
from daemon.specs import ListingSpec, SpecError, parse_spec
from daemon.store import listings as store
from daemon.sync.runtime import open_runtime
from daemon.timestamps import iso, utcnow

CSV_COLUMNS = ("id", "connection_id", "listing_key")
STATUS_CHOICES = [s.value for s in LocalStatus]


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
def add(
    config_path: Path | None,
    listing_id: str,
    connection_id: str,
    listing_key: str,
    status: str | None,
) -> None:
    """Track a listing. An existing ID is re-pointed; its status is left to the MLS."""
    spec = spec_or_fail(
        ListingSpec,
        {
            "id": listing_id,
            "connection_id": connection_id,
            "listing_key": listing_key,
            "status": status,
        },
    )
    settings = settings_from(config_path)

    async def main() -> int:
        async with open_runtime(settings) as rt:
            return await store.add_many(rt.db, [spec], iso(utcnow()))

    changed = run(main)
    click.echo(f"listing {listing_id} {'tracked' if changed else 'unchanged'}")


@listings.command("import")
@CONFIG_OPTION
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(path_type=Path, dir_okay=False))
def import_(config_path: Path | None, csv_file: Path) -> None:
    """Track many listings from a CSV file with a header row:

    \b
      id,connection_id,listing_key[,status]
      L-1001,crmls,3yd-CRMLS-A1001,active

    Every row is checked first; if any is bad, each problem is printed with its line number
    and nothing is imported (exit 65).
    """
    specs = _read_csv(csv_file)
    settings = settings_from(config_path)

    async def main() -> int:
        async with open_runtime(settings) as rt:
            return await store.add_many(rt.db, specs, iso(utcnow()))

    changed = run(main)
    click.echo(f"{len(specs)} row(s) read, {changed} listing(s) added or re-pointed")


def _read_csv(path: Path) -> list[ListingSpec]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                fail(
                    f"{path}: the header lacks {', '.join(missing)} "
                    f"(expected {','.join(CSV_COLUMNS)}[,status])",
                    EX_DATAERR,
                )
            unknown = [c for c in header if c not in (*CSV_COLUMNS, "status")]
            if unknown:
                fail(f"{path}: unknown column(s) {', '.join(unknown)}", EX_DATAERR)
            rows = list(reader)
    except OSError as exc:
        fail(f"{path}: {exc.strerror}", EX_DATAERR)
    except (csv.Error, UnicodeDecodeError) as exc:
        fail(f"{path}: not a readable CSV file: {exc}", EX_DATAERR)
    specs: list[ListingSpec] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        data = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if not data.get("status"):
            data.pop("status", None)
        try:
            spec = parse_spec(ListingSpec, data, where=f"line {line}")
        except SpecError as exc:
            problems.append(str(exc))
            continue
        if spec.id in seen:
            problems.append(f"line {line}: id {spec.id!r} is already on line {seen[spec.id]}")
            continue
        seen[spec.id] = line
        specs.append(spec)
    if problems:
        fail(f"{path}: nothing imported:\n" + "\n".join(problems), EX_DATAERR)
    if not specs:
        fail(f"{path}: no rows to import", EX_DATAERR)
    return specs


@listings.command("list")
@CONFIG_OPTION
@click.option("--connection", "connection_id", metavar="ID", help="Only this connection's.")
@click.option("--status", type=click.Choice([*STATUS_CHOICES, "unknown"]), help="Only this status.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@JSON_OPTION
def list_(
    config_path: Path | None,
    connection_id: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List tracked listings with their local and MLS status."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            rows = [asdict(r) for r in await store.list_some(rt.db, connection_id, status, limit)]
        echo_rows(
            rows,
            [
                "id",
                "connection_id",
                "listing_key",
                "status",
                "mls_standard_status",
                "excluded",
                "last_checked_at",
                "last_error",
            ],
            as_json,
        )

    run(main)


@listings.command("show")
@CONFIG_OPTION
@click.argument("listing_id", metavar="ID")
@JSON_OPTION
def show(config_path: Path | None, listing_id: str, as_json: bool) -> None:
    """Show a listing and its audit trail (every status change, with the MLS values)."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            row = await store.get(rt.db, listing_id)
            if row is None:
                raise LookupError(f"no listing {listing_id!r} (see `mls-sync listings list`)")
            trail = [asdict(c) for c in await store.history(rt.db, listing_id)]
        record = asdict(row)
        record["publishable"] = is_publishable(LocalStatus(row.status) if row.status else None)
        if as_json:
            echo_json({**record, "status_changes": trail})
            return
        echo_record(record)
        click.echo("")
        echo_table(
            trail,
            [
                "changed_at",
                "event",
                "from_status",
                "to_status",
                "mls_standard_status",
                "mls_status",
                "run_id",
            ],
        )

    run(main)


def _set_excluded(config_path: Path | None, listing_id: str, excluded: bool) -> None:
    settings = settings_from(config_path)

    async def main() -> bool:
        async with open_runtime(settings) as rt:
            return await store.set_excluded(rt.db, listing_id, excluded, iso(utcnow()))

    if not run(main):
        fail(f"no listing {listing_id!r}")
    click.echo(f"listing {listing_id} {'excluded from' if excluded else 'included in'} sync")


@listings.command("exclude")
@CONFIG_OPTION
@click.argument("listing_id", metavar="ID")
def exclude(config_path: Path | None, listing_id: str) -> None:
    """Leave a listing out of every sync until it is included again (selective sync)."""
    _set_excluded(config_path, listing_id, True)


@listings.command("include")
@CONFIG_OPTION
@click.argument("listing_id", metavar="ID")
def include(config_path: Path | None, listing_id: str) -> None:
    """Sync an excluded listing again from the next cycle."""
    _set_excluded(config_path, listing_id, False)
