"""accounts add|list|show|remove: the social accounts posts are published from."""

from __future__ import annotations

from pathlib import Path

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    JSON_OPTION,
    choice_of,
    fields_or_fail,
    record_command,
    secret_from,
)
from daemon.cli.generic import USER_FILTER, list_command_for, show_command_for
from daemon.cli.render import echo_done
from daemon.cli.surface import call, echo_saved, given_or_asked
from daemon.enums import AccountState
from daemon.ops.accounts import AccountTokens
from daemon.ops.manager import Operations
from daemon.ops.queries import AccountQuery
from daemon.ops.views import View
from daemon.platforms.registry import PLATFORM_NAMES
from daemon.specs import AccountSpec

LIST_COLUMNS = ["id", "user_id", "platform", "connected_via", "state", "last_error"]


@click.group()
def accounts() -> None:
    """Manage platform accounts (Facebook Pages, Instagram professional accounts, LinkedIn).

    Tokens are encrypted in the database with the secret key and never printed.
    """


@accounts.command("add")
@CONFIG_OPTION
@click.option("--id", "id_", required=True, help="Your id for this account.")
@click.option(
    "--user",
    "user_id",
    required=True,
    metavar="ID",
    help="Whose account it is: a user (`mls-sync users add`), e.g. default.",
)
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
    fields = fields_or_fail(AccountSpec, id_, given)

    async def put(ops: Operations) -> tuple[View, bool]:
        tokens = AccountTokens(
            await given_or_asked(ops.accounts.get, id_, token_env, token_file, "access token"),
            secret_from(refresh_token_env, None, "refresh token", required=False),
            secret_from(client_secret_env, None, "client secret", required=False),
        )
        return await ops.accounts.put(id_, fields, tokens)

    echo_saved("account", id_, call(config_path, put), as_json)


list_command_for(
    accounts,
    AccountQuery,
    lambda ops, query: ops.accounts.list(query),
    LIST_COLUMNS,
    "List accounts and their state (active, needs_reauth, disabled).",
    click.option("--platform", type=click.Choice(PLATFORM_NAMES), help="Only this platform's."),
    click.option("--state", type=choice_of(AccountState), help="Only these."),
    USER_FILTER,
)


show_command_for(
    accounts,
    "account_id",
    lambda ops, account_id: ops.accounts.get(account_id),
    "Show one account (its tokens are never shown).",
)


@accounts.command("remove")
@record_command("account_id")
def remove(config_path: Path | None, account_id: str, as_json: bool) -> None:
    """Remove an account and its tokens (refused while posts still refer to it)."""
    removed = call(config_path, lambda ops: ops.accounts.remove(account_id))
    echo_done(removed, as_json, f"account {account_id} removed")
