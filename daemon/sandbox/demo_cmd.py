"""`mls-sync demo`: about a minute of a compressed market, on the sandbox, then a summary.

The command alone: what it plays (daemon/sandbox/demo_play.py) imports the sandbox's
servers, the API and the workers, which every other command would otherwise load at start
for nothing (this module is imported by the entry point, daemon/main.py)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--duration",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Seconds of market to play (then one clean cycle to settle).",
)
@click.option(
    "--interval",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0, 600),
    help="Seconds between cycles (the daemon's 15 minutes, compressed).",
)
@click.option("--listings", default=300, show_default=True, type=click.IntRange(3, 100_000))
@click.option("--seed", default=7, show_default=True, type=int, help="Same seed, same story.")
@click.option(
    "--keep",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the demo's database in this folder (default: a temporary one).",
)
def demo(duration: float, interval: float, listings: int, seed: int, keep: Path | None) -> None:
    """Watch mls-sync work: a sandbox MLS whose market moves every cycle (listings go under
    contract, sell, come back, leave the feed), sandbox Facebook, Instagram and LinkedIn whose
    posts come down when a listing sells, and faults thrown at both (429s, 5xx, garbage).

    Last, the sandbox MLS sells a listing and pushes the event to mls-sync's push route
    (RESO push, as an MLS that pushes would): the summary times it from the change in the
    MLS to the listing sold and its posts taken down, in seconds rather than a cycle.

    Runs on its own database (your config.toml and state are not touched), shows a live table,
    ends by itself, and checks at the end that every listing follows the MLS and no sold
    listing still has a post. Exit 0 when it all ended in step and the pushed sale's posts
    came down, 1 otherwise.
    """
    from daemon.sandbox.demo_play import play_demo

    play_demo(duration, interval, listings, seed, keep)
