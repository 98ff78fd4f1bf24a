"""accounts add|list|show|remove: the social accounts posts are published from."""

from __future__ import annotations

from pathlib import Path

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
from daemon.specs import AccountSpec
from daemon.store import accounts as store
from daemon.sync.runtime import open_runtime
from daemon.timestamps import iso, utcnow


@click.group()
def accounts() -> None:
    """Manage platform accounts (Facebook Pages, Instagram professional accounts, LinkedIn).

    Tokens are encrypted in the database with the secret key and never printed.
    """


@accounts.command("add")
@CONFIG_OPTION
@click.option("--id", "id_", required=True, help="Your id for this account.")
@click.option("--user", "user_id", required=True, help="Whose account it is (your user id).")
@click.option("--platform", type=click.Choice(["facebook", "instagram", "linkedin"]), required=True)
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
) -> None:
    """Add an account, or update the one with the same --id (new tokens re-activate an
    account that needed re-authentication)."""
    spec = spec_or_fail(
        AccountSpec,
        {
            "id": id_,
            "user_id": user_id,
            "platform": platform,
            "connected_via": connected_via,
            "client_id": client_id,
        },
    )
    settings = settings_from(config_path)

    async def main() -> bool:
        async with open_runtime(settings) as rt:
            box = rt.require_box()
            existing = await store.get(rt.db, spec.id)
            token = secret_from(token_env, token_file, "access token", required=existing is None)
            refresh = secret_from(refresh_token_env, None, "refresh token", required=False)
            client_secret = secret_from(client_secret_env, None, "client secret", required=False)
            return await store.upsert(
                rt.db,
                spec,
                box.encrypt(token) if token else None,
                box.encrypt(refresh) if refresh else None,
                box.encrypt(client_secret) if client_secret else None,
                iso(utcnow()),
            )

    created = run(main)
    click.echo(f"account {spec.id} {'added' if created else 'updated'}")


@accounts.command("list")
@CONFIG_OPTION
@JSON_OPTION
def list_(config_path: Path | None, as_json: bool) -> None:
    """List accounts and their state (active, needs_reauth, disabled)."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            rows = [a.public() for a in await store.list_all(rt.db)]
        echo_rows(
            rows, ["id", "user_id", "platform", "connected_via", "state", "last_error"], as_json
        )

    run(main)


@accounts.command("show")
@CONFIG_OPTION
@click.argument("account_id", metavar="ID")
@JSON_OPTION
def show(config_path: Path | None, account_id: str, as_json: bool) -> None:
    """Show one account (its tokens are never shown)."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            row = await store.get(rt.db, account_id)
        if row is None:
            raise LookupError(f"no account {account_id!r} (see `mls-sync accounts list`)")
        (echo_json if as_json else echo_record)(row.public())

    run(main)


@accounts.command("remove")
@CONFIG_OPTION
@click.argument("account_id", metavar="ID")
def remove(config_path: Path | None, account_id: str) -> None:
    """Remove an account and its tokens (refused while posts still refer to it)."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            await store.remove(rt.db, account_id)

    run(main)
    click.echo(f"account {account_id} removed")
