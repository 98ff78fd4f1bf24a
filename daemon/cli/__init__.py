"""The `mls-sync` command line."""

from __future__ import annotations

from pathlib import Path

import click

from daemon.cli import (
    accounts_cmd,
    connections_cmd,
    events_cmd,
    keys_cmd,
    listings_cmd,
    posts_cmd,
    run_cmd,
    sync_cmd,
    tokens_cmd,
    users_cmd,
    webhooks_cmd,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mls-sync")
@click.option(
    "--api",
    "api_url",
    metavar="URL",
    envvar="MLS_SYNC_API_URL",
    show_envvar=True,
    help="Manage the running daemon at URL (e.g. http://127.0.0.1:8787) over its /v1 API, "
    "instead of this machine's database. The token: MLS_SYNC_API_TOKEN or --api-token-file.",
)
@click.option(
    "--api-token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the API token for --api from this file.",
)
def cli(api_url: str | None, api_token_file: Path | None) -> None:
    """Keeps listing statuses in step with the MLS (RESO Web API) and takes a sold listing's
    social posts down.

    \b
    Start here:
      mls-sync demo                  a one-minute walkthrough on the sandbox
      mls-sync run                   the daemon (what systemd starts)
      mls-sync check-config          is config.toml valid? what is in effect?
      mls-sync sync                  run one sync cycle now and print a summary
      mls-sync history               what the last cycles did
      mls-sync users --help          who owns connections, listings and accounts
      mls-sync connections --help    manage MLS connections
      mls-sync listings --help       manage tracked listings
      mls-sync accounts --help       social accounts (Facebook, Instagram, LinkedIn)
      mls-sync posts --help          their posts; `posts list --status manual_required`
      mls-sync manual-actions        what only a person can do, with links
      mls-sync unpublish --listing ID   take one listing's posts down now
      mls-sync tokens --help         the /v1 API's tokens (read, write, admin)
      mls-sync webhooks --help       signed webhooks to your app, in event order
      mls-sync events follow         every change as it commits (JSON lines)

    Management commands work on this machine's database, or, with --api URL, on the running
    daemon over its /v1 API (same commands, same output).

    The shipped config.toml runs against an embedded sandbox MLS: no credentials, no network.
    """


for command in (
    run_cmd.run,
    keys_cmd.check_config,
    keys_cmd.generate_key,
    keys_cmd.rotate_key,
    sync_cmd.sync,
    sync_cmd.history,
    connections_cmd.connections,
    listings_cmd.listings,
    accounts_cmd.accounts,
    posts_cmd.posts,
    posts_cmd.unpublish,
    posts_cmd.manual_actions,
    tokens_cmd.tokens,
    webhooks_cmd.webhooks,
    events_cmd.events,
    users_cmd.users,
):
    cli.add_command(command)
