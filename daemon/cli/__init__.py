"""The `mls-sync` command line."""

from __future__ import annotations

import click

from daemon.cli import connections_cmd, keys_cmd, listings_cmd, sync_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mls-sync")
def cli() -> None:
    """Keeps listing statuses in step with the MLS (RESO Web API) and takes a sold listing's
    social posts down.

    \b
    Start here:
      mls-sync check-config          is config.toml valid? what is in effect?
      mls-sync sync                  run one sync cycle now and print a summary
      mls-sync history               what the last cycles did
      mls-sync connections --help    manage MLS connections
      mls-sync listings --help       manage tracked listings

    The shipped config.toml runs against an embedded sandbox MLS: no credentials, no network.
    """


cli.add_command(keys_cmd.check_config)
cli.add_command(keys_cmd.generate_key)
cli.add_command(keys_cmd.rotate_key)
cli.add_command(sync_cmd.sync)
cli.add_command(sync_cmd.history)
cli.add_command(connections_cmd.connections)
cli.add_command(listings_cmd.listings)


def main() -> None:
    cli(prog_name="mls-sync")
