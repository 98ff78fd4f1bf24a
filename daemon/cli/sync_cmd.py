"""sync and history: run a cycle now, and look back at what cycles did."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    JSON_OPTION,
    echo_json,
    echo_record,
    echo_rows,
    echo_sandbox,
    echo_table,
    fail,
    progress_printer,
    run,
    settings_from,
)
from daemon.sandbox.environment import SandboxSession, runtime_for
from daemon.store import runs
from daemon.sync.engine import RunReport, SyncEngine
from daemon.sync.runtime import open_runtime


@click.command()
@CONFIG_OPTION
@click.option("--connection", "connection_id", metavar="ID", help="Sync only this connection.")
@click.option("--listing", "listing_id", metavar="ID", help="Sync only this listing (manual sync).")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@click.option("--verbose", "-v", is_flag=True, help="Log every status change (to stderr).")
def sync(
    config_path: Path | None,
    connection_id: str | None,
    listing_id: str | None,
    quiet: bool,
    verbose: bool,
) -> None:
    """Run one sync cycle now, in this process, and print its summary.

    Asks the MLS for the status of every tracked listing (of one connection, or one listing),
    makes the local status equal to the MLS status, and records the run in the history.
    With [sandbox] enabled, the embedded sandbox MLS is started first and its market moves a
    little, so each run has changes to apply.

    Exits 0 when the cycle ran, even if it recorded errors (see `mls-sync history --run ID`);
    130 after Ctrl-C, 143 after SIGTERM (a run it began is recorded as interrupted; further
    signals do not cut that short); otherwise non-zero only when it could not run.
    """
    if connection_id and listing_id:
        fail("give --connection or --listing, not both", 2)
    settings = settings_from(config_path, verbose)

    def move_market(sandbox: SandboxSession) -> None:
        echo_sandbox(sandbox)
        moves = sandbox.move_market(settings.sandbox.moves_per_cycle)
        click.echo(f"  the market moved {len(moves)} listing(s), for example:")
        for m in moves[:5]:
            click.echo(f"    {m.key}: {m.before} -> {m.after}")

    began: list[bool] = []

    async def main() -> RunReport:
        async with runtime_for(settings, progress_printer(not quiet), move_market) as (rt, _):
            began.append(True)
            return await _one(rt.engine, connection_id, listing_id)

    def cut_short() -> str:
        if began:
            return "; the run is recorded as interrupted (mls-sync history)"
        return " before its run began; nothing was synced"

    started = time.monotonic()
    report = run(main, cut_short)
    _print_report(report, time.monotonic() - started)


async def _one(engine: SyncEngine, connection_id: str | None, listing_id: str | None) -> RunReport:
    if listing_id:
        report, listing = await engine.sync_listing(listing_id)
        click.echo(
            f"listing {listing.id} ({listing.listing_key}): status {listing.status}"
            f" (MLS: {listing.mls_standard_status})"
        )
        return report
    if connection_id:
        return await engine.sync_connection(connection_id)
    return await engine.sync_all()


def _print_report(report: RunReport, seconds: float) -> None:
    r = report.run
    click.echo(f"run {r.id} ({r.trigger}, {r.scope}): {r.outcome} in {seconds:.1f} s")
    click.echo(
        f"  connections {r.connections}, listings checked {r.listings_checked}, "
        f"status changes {r.status_changes}, errors {r.errors}, warnings {r.warnings}, "
        f"MLS requests {r.mls_requests}"
    )
    if report.changes:
        kinds = ", ".join(f"{kind} {n}" for kind, n in report.changes.items())
        click.echo(f"  changes by kind: {kinds}")
    click.echo(
        f"  posts: unpublished {r.posts_unpublished}, already gone {r.posts_already_gone}, "
        f"failed {r.posts_failed} (retried later), need a person {r.posts_manual}"
        + (f"; {report.posts_due} still due" if report.posts_due else "")
    )
    if report.errors:
        click.echo(f"  problems (first 50; all: mls-sync history --run {r.id}):")
        for e in report.errors:
            where = " ".join(x for x in (e.connection_id, e.listing_id) if x)
            click.echo(f"    {e.severity} [{e.scope}] {where}: {e.message}")


@click.command()
@CONFIG_OPTION
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="How many runs to show.",
)
@click.option("--run", "run_id", type=int, metavar="ID", help="Show one run with its errors.")
@JSON_OPTION
def history(config_path: Path | None, limit: int, run_id: int | None, as_json: bool) -> None:
    """Show the sync history: the last runs (newest first), or one run and its errors."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            if run_id is None:
                rows = [asdict(r) for r in await runs.recent(rt.db, limit)]
                echo_rows(
                    rows,
                    [
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
                    ],
                    as_json,
                )
                return
            one = await runs.get(rt.db, run_id)
            if one is None:
                raise LookupError(f"no run {run_id}")
            errors = [asdict(e) for e in await runs.errors_of(rt.db, run_id, 10_000)]
            if as_json:
                echo_json({**asdict(one), "problems": errors})
                return
            echo_record(asdict(one))
            click.echo("")
            echo_table(errors, ["severity", "scope", "connection_id", "listing_id", "message"])

    run(main)
