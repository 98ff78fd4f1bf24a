"""sync and history: run a cycle now, and look back at what cycles did."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import click

from daemon.cli.common import (
    CONFIG_OPTION,
    EX_PARTIAL,
    EX_USAGE,
    JSON_OPTION,
    choice_of,
    fail,
    list_options,
    progress_printer,
    run,
    spec_or_fail,
)
from daemon.cli.render import (
    echo_environment,
    echo_json,
    echo_page,
    echo_record,
)
from daemon.cli.surface import call, surface
from daemon.enums import RunOutcome
from daemon.ops.manager import Operations
from daemon.ops.pages import Page
from daemon.ops.queries import RunErrorQuery, RunQuery

RUN_COLUMNS = [
    "id",
    "trigger",
    "scope",
    "started_at",
    "outcome",
    "connections",
    "listings_checked",
    "status_changes",
    "errors",
    "warnings",
]
FOLLOW_EVERY_SECONDS = 1.0


@click.command()
@CONFIG_OPTION
@click.option("--connection", "connection_id", metavar="ID", help="Sync only this connection.")
@click.option("--listing", "listing_id", metavar="ID", help="Sync only this listing (manual sync).")
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 3 when the run recorded errors (partial), 1 when it failed: for cron and CI.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@click.option("--verbose", "-v", is_flag=True, help="Log every status change (to stderr).")
@JSON_OPTION
def sync(
    config_path: Path | None,
    connection_id: str | None,
    listing_id: str | None,
    strict: bool,
    quiet: bool,
    verbose: bool,
    as_json: bool,
) -> None:
    """Run one sync cycle now and print its summary.

    Asks the MLS for the status of every tracked listing (of one connection, or one listing),
    makes the local status equal to the MLS status, and records the run in the history.
    Locally it runs in this process; with --api the running daemon runs it (a full cycle is
    coalesced with any other trigger) and this command follows it to its end. With [sandbox]
    enabled, the embedded sandbox MLS is started first and its market moves a little, so each
    run has changes to apply.

    \b
    Exit codes: 0 when the cycle ran, even if it recorded errors (see `mls-sync history
    --run ID`); with --strict, 3 when it recorded errors (partial) and 1 when it failed;
    130 after Ctrl-C, 143 after SIGTERM (a run it began is recorded as interrupted; further
    signals do not cut that short); otherwise non-zero only when it could not run.
    """
    if connection_id and listing_id:
        fail("give --connection or --listing, not both", EX_USAGE)
    where = surface(config_path, verbose)
    began: list[bool] = []

    async def main() -> dict[str, Any]:
        progress = progress_printer(not quiet and not where.is_remote)
        recorded = began.append
        async with where.open(True, progress, lambda run_id: recorded(True)) as (ops, environment):
            echo_environment(environment, err=as_json)
            if environment is not None:
                moves = environment.before_cycle()
                said = [f"  the market moved {len(moves)} listing(s), for example:"]
                click.echo("\n".join(said + [f"    {move}" for move in moves[:5]]), err=as_json)
            return await _one(ops, connection_id, listing_id)

    def cut_short() -> str:
        if where.is_remote:
            return "; the daemon goes on with the run (mls-sync --api ... history)"
        if began:
            return "; the run is recorded as interrupted (mls-sync history)"
        return " before its run began; nothing was synced"

    started = time.monotonic()
    report = run(main, cut_short)
    if as_json:
        echo_json(report)
    else:
        if listing_id:
            listing = report["listing"]
            click.echo(
                f"listing {listing['id']} ({listing['listing_key']}): status {listing['status']}"
                f" (MLS: {listing['mls_standard_status']})"
            )
        print_report(report, time.monotonic() - started)
    if strict and report["outcome"] != "ok":
        raise SystemExit(EX_PARTIAL if report["outcome"] == "partial" else 1)


async def _one(
    ops: Operations, connection_id: str | None, listing_id: str | None
) -> dict[str, Any]:
    if listing_id:
        return await ops.listings.sync(listing_id, "manual")
    if connection_id:
        return await ops.sync.connection(connection_id, "manual")
    return await followed(ops, await ops.sync.everything("manual"))


async def followed(ops: Operations, asked: dict[str, Any]) -> dict[str, Any]:
    """The run a sync asked for ends with: the run itself when it ran here; else (the daemon
    runs it) its run, read until it has ended."""
    if "run_id" not in asked:
        return asked  # it ran here
    while True:
        run = await ops.runs.get(asked["run_id"])
        if run["outcome"] != "running":
            return run
        await anyio.sleep(FOLLOW_EVERY_SECONDS)


def print_report(r: dict[str, Any], seconds: float) -> None:
    click.echo(f"run {r['id']} ({r['trigger']}, {r['scope']}): {r['outcome']} in {seconds:.1f} s")
    click.echo(
        f"  connections {r['connections']}, listings checked {r['listings_checked']}, "
        f"status changes {r['status_changes']}, errors {r['errors']}, "
        f"warnings {r['warnings']}, MLS requests {r['mls_requests']}"
    )
    if r.get("changes"):
        kinds = ", ".join(f"{kind} {n}" for kind, n in r["changes"].items())
        click.echo(f"  changes by kind: {kinds}")
    due = r.get("posts_due")
    click.echo(
        f"  posts: unpublished {r['posts_unpublished']}, already gone "
        f"{r['posts_already_gone']}, failed {r['posts_failed']} (retried later), need a "
        f"person {r['posts_manual']}" + (f"; {due} still due" if due else "")
    )
    if r.get("problems"):
        click.echo(f"  problems (first 50; all: mls-sync history --run {r['id']}):")
        for e in r["problems"]:
            where = " ".join(x for x in (e["connection_id"], e["listing_id"]) if x)
            click.echo(f"    {e['severity']} [{e['scope']}] {where}: {e['message']}")


@click.command()
@CONFIG_OPTION
@click.option("--run", "run_id", type=int, metavar="ID", help="Show one run with its errors.")
@click.option("--outcome", type=choice_of(RunOutcome), help="Only runs that ended so.")
@list_options
@JSON_OPTION
def history(config_path: Path | None, run_id: int | None, as_json: bool, **given: Any) -> None:
    """Show the sync history: the last runs (newest first), or one run and its errors."""
    if run_id is None:
        query = spec_or_fail(RunQuery, given)
        page = call(config_path, lambda ops: ops.runs.list(query))
        echo_page(page, RUN_COLUMNS, as_json)
        return
    errors_query = spec_or_fail(RunErrorQuery, {k: given[k] for k in ("after", "limit")})

    async def both(ops: Operations) -> tuple[dict[str, Any], Page]:
        return await ops.runs.get(run_id), await ops.runs.errors(run_id, errors_query)

    one, errors = call(config_path, both)
    if as_json:
        echo_json({**one, "problems": errors.items, "next_after": errors.next_after})
        return
    echo_record(one)
    click.echo("")
    columns = ["severity", "scope", "connection_id", "listing_id", "message"]
    echo_page(errors, columns, False)
