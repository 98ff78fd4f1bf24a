"""tokens create|list|revoke: the named API tokens, each with a scope."""

from __future__ import annotations

from pathlib import Path

import click

from daemon.cli.common import CONFIG_OPTION, JSON_OPTION
from daemon.cli.render import echo_done, echo_json, echo_table
from daemon.cli.surface import call
from daemon.scopes import Scope

NOT_AGAIN = "This token is shown only now: store it where its user will read it."


@click.group()
def tokens() -> None:
    """Manage the /v1 API's tokens. Each has a name and a scope: `read` (monitoring and an
    app's reads), `write` (also changes records), `admin` (also credentials and keys).

    Only a hash of each token is stored: a token is shown once, when it is created. The token
    configured in MLS_SYNC_API_TOKEN (or $CREDENTIALS_DIRECTORY/api-token) is an admin token.
    """


@tokens.command("create")
@CONFIG_OPTION
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice([s.value for s in Scope]),
    required=True,
    help="What the token may do: read < write < admin.",
)
@JSON_OPTION
def create(config_path: Path | None, name: str, scope: str, as_json: bool) -> None:
    """Create a token and print it, once, on stdout (the note about it goes to stderr, so
    `... | install -m 0600 /dev/stdin FILE` stores the token alone)."""
    made, token = call(config_path, lambda ops: ops.tokens.create(name, Scope(scope)))
    if as_json:
        echo_json({**made, "token": token})
    else:
        click.echo(token)
    click.echo(f"token {made['name']} ({made['scope']}) created. {NOT_AGAIN}", err=True)


@tokens.command("list")
@CONFIG_OPTION
@JSON_OPTION
def list_(config_path: Path | None, as_json: bool) -> None:
    """List the tokens: name, scope, when created, last used (to the minute) and revoked."""
    found = call(config_path, lambda ops: ops.tokens.list())
    if as_json:
        echo_json(found)
    else:
        echo_table(found, ["name", "scope", "created_at", "last_used_at", "revoked_at"])


@tokens.command("revoke")
@CONFIG_OPTION
@click.argument("name")
@JSON_OPTION
def revoke(config_path: Path | None, name: str, as_json: bool) -> None:
    """Revoke a token: from the next request on, the API refuses it. Its name stays taken."""
    revoked = call(config_path, lambda ops: ops.tokens.revoke(name))
    echo_done(revoked, as_json, f"token {name} revoked")
