"""accounts add|list|show|remove: the social accounts posts are published from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    JSON_OPTION,
    list_options,
    run,
    secret_from,
    spec_or_fail,
)
from daemon.cli.render import echo_done, echo_json, echo_page, echo_view
from daemon.cli.surface import call, exists, surface
from daemon.enums import AccountState
from daemon.ops.accounts import AccountTokens
from daemon.ops.queries import AccountQuery
from daemon.platforms.registry import PLATFORM_NAMES
from daemon.specs import AccountSpec


@click.group()
def accounts() -> None:
    """Manage platform accounts (Facebook Pages, Instagram professional accounts, LinkedIn).

    Tokens are encrypted in the database with the secret key and never printed.
    """


@accounts.command("add")
@CONFIG_OPTION
@click.option("--id", "id_", required=True, help="Your id for this account.")
@click.option("--user", "user_id", required=True, help="Whose account it is (your user id).")
@click.option("--platform", type=click.Choice(PLATFORM_NAMES), required=True)
@click.option(
    "--connected-via",
    type=click.Choice(["facebook_login", "instagram_login"]),
    help="Instagram only: how it was connected. Instagram Login accounts cannot "
    "delete by API; their posts are listed for a person.",
)
@click.option("--token-env", metavar="NAME", help="Read the access token from this variable.")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the access token from this file.",
)
@click.option(
    "--refresh-token-env",
    metavar="NAME",
    help="LinkedIn: read a refresh token from this variable (enables refresh).",
)
@click.option("--client-id", help="LinkedIn: the app's client id, for refreshing.")
@click.option(
    "--client-secret-env",
    metavar="NAME",
    help="LinkedIn: read the app's client secret from this variable.",
)
@JSON_OPTION
def add(
    config_path: Path | None,
    id_: str,
    user_id: str,
    platform: str,
    connected_via: str | None,
    token_env: str | None,
    token_file: Path | None,
    refresh_token_env: str | None,
    client_id: str | None,
    client_secret_env: str | None,
    as_json: bool,
) -> None:
    """Add an account, or update the one with the same --id (new tokens re-activate an
    account that needed re-authentication)."""
    given = {
        "user_id": user_id,
        "platform": platform,
        "connected_via": connected_via,
        "client_id": client_id,
    }
    fields = {k: v for k, v in given.items() if v is not None}
    spec_or_fail(AccountSpec, {**fields, "id": id_})  # before anything opens or is asked
    where = surface(config_path)

    async def main() -> tuple[dict[str, Any], bool]:
        async with where.open() as (ops, _):
            token = None
            if token_env or token_file:
                token = secret_from(token_env, token_file, "access token", required=True)
            elif not await exists(ops.accounts.get, id_):
                token = secret_from(None, None, "access token", required=True)
            tokens = AccountTokens(
                token,
                secret_from(refresh_token_env, None, "refresh token", required=False),
                secret_from(client_secret_env, None, "client secret", required=False),
            )
            return await ops.accounts.put(id_, fields, tokens)

    view, created = run(main)
    if as_json:
        echo_json({**view, "created": created})
    else:
        click.echo(f"account {id_} {'added' if created else 'updated'}")


@accounts.command("list")
@CONFIG_OPTION
@click.option("--platform", type=click.Choice(PLATFORM_NAMES), help="Only this platform's.")
@click.option("--state", type=click.Choice([s.value for s in AccountState]), help="Only these.")
@click.option("--user", "user_id", metavar="ID", help="Only this user's.")
@list_options
@JSON_OPTION
def list_(config_path: Path | None, as_json: bool, **given: Any) -> None:
    """List accounts and their state (active, needs_reauth, disabled)."""
    query = spec_or_fail(AccountQuery, given)
    page = call(config_path, lambda ops: ops.accounts.list(query))
    columns = ["id", "user_id", "platform", "connected_via", "state", "last_error"]
    echo_page(page, columns, as_json, "mls-sync accounts list")


@accounts.command("show")
@CONFIG_OPTION
@click.argument("account_id", metavar="ID")
@JSON_OPTION
def show(config_path: Path | None, account_id: str, as_json: bool) -> None:
    """Show one account (its tokens are never shown)."""
    echo_view(call(config_path, lambda ops: ops.accounts.get(account_id)), as_json)


@accounts.command("remove")
@CONFIG_OPTION
@click.argument("account_id", metavar="ID")
@JSON_OPTION
def remove(config_path: Path | None, account_id: str, as_json: bool) -> None:
    """Remove an account and its tokens (refused while posts still refer to it)."""
    removed = call(config_path, lambda ops: ops.accounts.remove(account_id))
    echo_done(removed, as_json, f"account {account_id} removed")
