"""connections add|list|show|pause|resume|remove|push-token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    JSON_OPTION,
    choice_of,
    choice_option,
    fields_or_fail,
    record_command,
)
from daemon.cli.generic import USER_FILTER, list_command_for
from daemon.cli.render import echo_done, echo_json, echo_record, echo_table
from daemon.cli.surface import call, echo_saved, given_or_asked
from daemon.enums import AuthKind, ConnectionState, KeyFilter, QueryMode
from daemon.ops.manager import Operations
from daemon.ops.queries import ConnectionQuery
from daemon.ops.views import View
from daemon.specs import ConnectionSpec

TIER_COLUMNS = ["tier", "listings", "every_seconds", "next_due"]
LIST_COLUMNS = ["id", "name", "user_id", "mode", "state", "last_synced_at", "last_error"]


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
    "--user",
    "user_id",
    metavar="ID",
    help="Whose connection it is (a user: `mls-sync users add`). New connections without it "
    "are the default user's; a replaced one keeps its user unless this is given. Listings "
    "added to it later are its user's unless they name their own; those it already tracks "
    "keep theirs.",
)
@click.option(
    "--base-url", required=True, help="The Web API root, e.g. https://api.mls.example/reso/odata"
)
@click.option("--resource", default="Property", show_default=True)
@click.option(
    "--auth",
    "auth_kind",
    type=choice_of(AuthKind),
    default=AuthKind.BEARER.value,
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
@choice_option(
    "--mode",
    QueryMode,
    QueryMode.BY_KEY,
    "Ask for every tracked key, for what changed since last time (by ModificationTimestamp), "
    "or read the server's change log (EntityEvent) and then the listings it names.",
)
@choice_option(
    "--key-filter",
    KeyFilter,
    KeyFilter.IN,
    "How the server accepts a set of keys: `in`, an `or`-chain, or one request per key (`each`).",
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
    help="Incremental mode: seconds re-read before the cursor. Events mode: seconds a "
    "listing an event named is read again by the cycles (a server's reads may lag its log).",
)
@click.option(
    "--full-reconcile",
    "full_reconcile_seconds",
    type=int,
    default=86_400,
    show_default=True,
    help="Incremental and events modes: seconds between full by-key passes.",
)
@click.option(
    "--poll",
    "poll_seconds",
    type=int,
    default=60,
    show_default=True,
    help="Events mode: seconds between reads of the change log, apart from the cycle.",
)
@click.option(
    "--mlg-can-view",
    "select_mlg_can_view",
    is_flag=True,
    help="Ask for MlgCanView (MLS Grid) and treat false as removed.",
)
@click.option(
    "--no-metadata-check",
    "skip_metadata_check",
    is_flag=True,
    help="Mode events: store the connection without first asking its server's $metadata "
    "whether it keeps a change log (EntityEvent).",
)
@JSON_OPTION
def add(
    config_path: Path | None,
    id_: str,
    secret_env: str | None,
    secret_file: Path | None,
    skip_metadata_check: bool,
    as_json: bool,
    **fields: Any,
) -> None:
    """Add a connection, or replace the definition of one with the same --id.

    The credential is required for a new connection; for an existing one it is kept unless a
    new one is given (which also re-activates a connection that needed re-authentication).

    With --mode events, the server's $metadata is asked first: a server that declares no
    EntityEvent resource keeps no change log, and the connection is refused (nothing stored).
    """
    given = fields_or_fail(ConnectionSpec, id_, fields)
    what = "bearer token / client secret"

    async def put(ops: Operations) -> tuple[View, bool]:
        secret = await given_or_asked(ops.connections.get, id_, secret_env, secret_file, what)
        return await ops.connections.put(id_, given, secret, not skip_metadata_check)

    echo_saved("connection", id_, call(config_path, put), as_json)


list_command_for(
    connections,
    ConnectionQuery,
    lambda ops, query: ops.connections.list(query),
    LIST_COLUMNS,
    "List connections with their state and last sync.",
    click.option("--state", type=choice_of(ConnectionState), help="Only in this state."),
    USER_FILTER,
)


@connections.command("show")
@record_command("connection_id")
def show(config_path: Path | None, connection_id: str, as_json: bool) -> None:
    """Show one connection (its credential is never shown) and, for a by_key connection,
    its listings in each check tier: how often the scheduled cycle asks for them and when
    each tier is next due (docs/mls-reso.md "Check tiers")."""
    view = call(config_path, lambda ops: ops.connections.detail(connection_id))
    if as_json:
        echo_json(view)
        return
    echo_record(view)
    if view.get("check_tiers") is not None:  # (a daemon of an older version has none)
        click.echo("")
        echo_table(
            [{"tier": name, **tier} for name, tier in view["check_tiers"].items()],
            TIER_COLUMNS,
        )


@connections.command("pause")
@record_command("connection_id")
def pause(config_path: Path | None, connection_id: str, as_json: bool) -> None:
    """Stop syncing a connection until it is resumed (selective sync)."""
    paused = call(config_path, lambda ops: ops.connections.pause(connection_id))
    echo_done(paused, as_json, f"connection {connection_id} paused")


@connections.command("resume")
@record_command("connection_id")
def resume(config_path: Path | None, connection_id: str, as_json: bool) -> None:
    """Sync a paused connection again from the next cycle."""
    resumed = call(config_path, lambda ops: ops.connections.resume(connection_id))
    echo_done(resumed, as_json, f"connection {connection_id} resumed")


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
@JSON_OPTION
def remove(
    config_path: Path | None, connection_id: str, with_listings: bool, force: bool, as_json: bool
) -> None:
    """Remove a connection and its stored credential."""
    removed = call(
        config_path,
        lambda ops: ops.connections.remove(connection_id, with_listings=with_listings, force=force),
    )
    said = f" with {removed['listings_removed']} listing(s)" if removed["listings_removed"] else ""
    if removed["live_posts_removed"]:
        said += f" and {removed['live_posts_removed']} live post(s)"
    echo_done(removed, as_json, f"connection {connection_id} removed{said}")


@connections.command("push-token")
@CONFIG_OPTION
@click.argument("connection_id", metavar="ID")
@click.option("--off", is_flag=True, help="Turn push off instead: the MLS's pushes are refused.")
@JSON_OPTION
def push_token(config_path: Path | None, connection_id: str, off: bool, as_json: bool) -> None:
    """Print a new push token for an events-mode connection, once (docs/mls-reso.md "Push").

    The MLS sends it as the bearer token of its pushes, POSTed to
    /v1/mls-connections/ID/entity-events. A token made before stops working at once. Only
    its hash is stored: it cannot be shown again, only replaced."""
    if off:
        turned = call(config_path, lambda ops: ops.connections.turn_push_off(connection_id))
        echo_done(turned, as_json, f"push turned off for connection {connection_id}")
        return
    made, token = call(config_path, lambda ops: ops.connections.make_push_token(connection_id))
    if as_json:
        echo_json({**made, "push_token": token})
    else:
        click.echo(token)
    click.echo(
        f"push token of connection {connection_id} made. It is shown only now: give it to the "
        f"MLS, which POSTs its events to /v1/mls-connections/{connection_id}/entity-events.",
        err=True,
    )
