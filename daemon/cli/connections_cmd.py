"""connections add|list|show|pause|resume|remove."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    JSON_OPTION,
    echo_json,
    echo_record,
    echo_rows,
    run,
    secret_from,
    settings_from,
    spec_or_fail,
)
from daemon.enums import KeyFilter
from daemon.specs import ConnectionSpec
from daemon.store import connections as store
from daemon.sync.runtime import open_runtime
from daemon.timestamps import iso, utcnow


@click.group()
def connections() -> None:
    """Manage MLS connections (RESO Web API servers and their credentials).

    Credentials are encrypted in the database with the secret key; they are never printed.
    """


@connections.command("add")
@CONFIG_OPTION
@click.option("--id", "id_", required=True, help="Your id for this connection, e.g. 'crmls'.")
@click.option("--name", required=True, help="A name people recognise.")
@click.option(
    "--base-url", required=True, help="The Web API root, e.g. https://api.mls.example/reso/odata"
)
@click.option("--resource", default="Property", show_default=True)
@click.option(
    "--auth",
    "auth_kind",
    type=click.Choice(["bearer", "oauth2"]),
    default="bearer",
    show_default=True,
    help="A static bearer token, or OAuth2 client credentials.",
)
@click.option("--token-url", help="OAuth2 token endpoint (with --auth oauth2).")
@click.option("--client-id", help="OAuth2 client id (with --auth oauth2).")
@click.option("--scope", help="OAuth2 scope, if the server wants one (Trestle: api).")
@click.option(
    "--secret-env",
    metavar="NAME",
    help="Read the bearer token / client secret from this environment variable.",
)
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the bearer token / client secret from this file.",
)
@click.option(
    "--mode",
    type=click.Choice(["by_key", "incremental"]),
    default="by_key",
    show_default=True,
    help="Ask for every tracked key, or for what changed since last time.",
)
@click.option(
    "--key-filter",
    type=click.Choice([k.value for k in KeyFilter]),
    default="in",
    show_default=True,
    help="How the server accepts a set of keys: `in`, an `or`-chain, "
    "or one request per key (`each`).",
)
@click.option("--batch-size", type=int, default=50, show_default=True)
@click.option("--page-size", type=int, default=200, show_default=True)
@click.option(
    "--rate",
    "rate_per_second",
    type=float,
    default=2.0,
    show_default=True,
    help="Requests per second allowed for this credential (no burst).",
)
@click.option(
    "--overlap",
    "overlap_seconds",
    type=int,
    default=1200,
    show_default=True,
    help="Incremental mode: seconds re-read before the cursor.",
)
@click.option(
    "--full-reconcile",
    "full_reconcile_seconds",
    type=int,
    default=86_400,
    show_default=True,
    help="Incremental mode: seconds between full by-key passes.",
)
@click.option(
    "--mlg-can-view",
    "select_mlg_can_view",
    is_flag=True,
    help="Ask for MlgCanView (MLS Grid) and treat false as removed.",
)
def add(
    config_path: Path | None,
    id_: str,
    secret_env: str | None,
    secret_file: Path | None,
    **fields: Any,
) -> None:
    """Add a connection, or replace the definition of one with the same --id.

    The credential is required for a new connection; for an existing one it is kept unless a
    new one is given (which also re-activates a connection that needed re-authentication).
    """
    spec = spec_or_fail(
        ConnectionSpec, {"id": id_, **{k: v for k, v in fields.items() if v is not None}}
    )
    settings = settings_from(config_path)

    async def main() -> bool:
        async with open_runtime(settings) as rt:
            existing = await store.get(rt.db, spec.id)
            secret = secret_from(
                secret_env, secret_file, "bearer token / client secret", required=existing is None
            )
            encrypted = rt.require_box().encrypt(secret) if secret else None
            return await store.upsert(rt.db, spec, encrypted, iso(utcnow()))

    created = run(main)
    click.echo(f"connection {spec.id} {'added' if created else 'updated'}")


@connections.command("list")
@CONFIG_OPTION
@JSON_OPTION
def list_(config_path: Path | None, as_json: bool) -> None:
    """List connections with their state and last sync."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            rows = [c.public() for c in await store.list_all(rt.db)]
        echo_rows(rows, ["id", "name", "mode", "state", "last_synced_at", "last_error"], as_json)

    run(main)


@connections.command("show")
@CONFIG_OPTION
@click.argument("connection_id", metavar="ID")
@JSON_OPTION
def show(config_path: Path | None, connection_id: str, as_json: bool) -> None:
    """Show one connection (its credential is never shown)."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            row = await store.get(rt.db, connection_id)
        if row is None:
            raise LookupError(f"no connection {connection_id!r} (see `mls-sync connections list`)")
        (echo_json if as_json else echo_record)(row.public())

    run(main)


def _set_state(config_path: Path | None, connection_id: str, state: str, verb: str) -> None:
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            row = await store.get(rt.db, connection_id)
            if row is None:
                raise LookupError(f"no connection {connection_id!r}")
            if state == "active" and row.state == "needs_reauth":
                raise ValueError(
                    f"connection {connection_id!r} needs re-authentication: give it new "
                    "credentials with `mls-sync connections add` (same --id)"
                )
            await store.set_state(rt.db, connection_id, state, None, iso(utcnow()))

    run(main)
    click.echo(f"connection {connection_id} {verb}")


@connections.command("pause")
@CONFIG_OPTION
@click.argument("connection_id", metavar="ID")
def pause(config_path: Path | None, connection_id: str) -> None:
    """Stop syncing a connection until it is resumed (selective sync)."""
    _set_state(config_path, connection_id, "paused", "paused")


@connections.command("resume")
@CONFIG_OPTION
@click.argument("connection_id", metavar="ID")
def resume(config_path: Path | None, connection_id: str) -> None:
    """Sync a paused connection again from the next cycle."""
    _set_state(config_path, connection_id, "active", "resumed")


@connections.command("remove")
@CONFIG_OPTION
@click.argument("connection_id", metavar="ID")
@click.option(
    "--with-listings",
    is_flag=True,
    help="Also stop tracking its listings (their audit history is kept).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also when posts of its listings are still live: their records are dropped, and "
    "nothing takes them down any more.",
)
def remove(config_path: Path | None, connection_id: str, with_listings: bool, force: bool) -> None:
    """Remove a connection and its stored credential."""
    settings = settings_from(config_path)

    async def main() -> store.Removed:
        async with open_runtime(settings) as rt:
            return await store.remove(rt.db, connection_id, with_listings, force)

    removed = run(main)
    said = f" with {removed.listings} listing(s)" if removed.listings else ""
    if removed.live_posts:
        said += f" and {removed.live_posts} live post(s)"
    click.echo(f"connection {connection_id} removed{said}")
