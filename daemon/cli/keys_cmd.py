"""check-config, generate-key, rotate-key."""

from __future__ import annotations

from pathlib import Path

import click

from daemon.cli.common import CONFIG_OPTION, JSON_OPTION, fail, on_this_machine, run, settings_from
from daemon.cli.render import echo_done, echo_json
from daemon.cli.surface import user
from daemon.composition import open_runtime, secret_key_text
from daemon.config import describe
from daemon.credentials import (
    API_TOKEN_CREDENTIAL,
    API_TOKEN_ENV,
    SECRET_KEY_CREDENTIAL,
    SECRET_KEY_ENV,
    read_secret,
)
from daemon.encryption import generate_key as new_fernet_key
from daemon.ops.context import OpsContext
from daemon.ops.keys import KeyOps

NO_CONFIGURED_TOKEN = "not set (the /v1 API takes only tokens made by `mls-sync tokens create`)"  # noqa: S105


@click.command("check-config")
@CONFIG_OPTION
def check_config(config_path: Path | None) -> None:
    """Validate the configuration and print the settings in effect.

    Exits 78 (EX_CONFIG) with one line per problem when the file or an MLS_SYNC_* environment
    variable is invalid; exits 0 and prints the effective settings (secrets masked) otherwise.
    """
    on_this_machine("check-config")
    settings = settings_from(config_path)
    effective = describe(settings)
    key = read_secret(SECRET_KEY_ENV, SECRET_KEY_CREDENTIAL)
    token = read_secret(API_TOKEN_ENV, API_TOKEN_CREDENTIAL)
    effective["secrets"] = {
        "secret_key": f"set ({key.origin})"
        if key
        else ("sandbox key file beside the database" if settings.sandbox.enabled else "not set"),
        "api_token": f"set ({token.origin})" if token else NO_CONFIGURED_TOKEN,
    }
    echo_json(effective)


@click.command("generate-key")
@JSON_OPTION
def generate_key(as_json: bool) -> None:
    """Print a new encryption key (Fernet) for MLS_SYNC_SECRET_KEY or
    $CREDENTIALS_DIRECTORY/secret-key.

    To rotate: put the new key first and the old one after it (comma-separated), run
    `mls-sync rotate-key`, then drop the old key.
    """
    key = new_fernet_key()
    echo_done({"key": key}, as_json, key)


@click.command("rotate-key")
@CONFIG_OPTION
@JSON_OPTION
def rotate_key(config_path: Path | None, as_json: bool) -> None:
    """Re-encrypt every stored secret with the first configured key.

    Give the keys as "NEW,OLD" in MLS_SYNC_SECRET_KEY (or one per line in the credential
    file); afterwards the old key can be removed.
    """
    on_this_machine("rotate-key")
    settings = settings_from(config_path)
    if secret_key_text(settings) is None:
        fail(f"no key configured: set {SECRET_KEY_ENV} to 'NEW_KEY,OLD_KEY'")

    async def main() -> dict[str, int]:
        async with open_runtime(settings) as rt:
            return await KeyOps(OpsContext(rt.db, rt.box, actor=f"cli:{user()}")).rotate()

    done = run(main)
    said = f"re-encrypted {done['re_encrypted']} secret(s) with the first key"
    echo_done(done, as_json, said)
