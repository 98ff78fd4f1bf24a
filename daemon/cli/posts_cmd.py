"""posts add|list|show, and unpublish: the social posts of listings."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    JSON_OPTION,
    echo_json,
    echo_record,
    echo_rows,
    echo_sandbox,
    fail,
    run,
    settings_from,
)
from daemon.platforms.links import post_link
from daemon.sandbox.environment import runtime_for
from daemon.specs import PostSpec, SpecError, parse_spec
from daemon.store import posts as store
from daemon.sync.engine import RunReport
from daemon.sync.runtime import open_runtime
from daemon.timestamps import iso, utcnow


@click.group()
def posts() -> None:
    """Record and inspect the social posts of listings.

    A post is `published` until mls-sync takes it down (`unpublished`) or finds that only a
    person can (`manual_required`, listed with a link by `posts list --status manual_required`).
    """


@posts.command("add")
@CONFIG_OPTION
@click.argument("post_id", metavar="ID")
@click.option("--listing", "listing_id", required=True, metavar="ID")
@click.option("--account", "account_id", required=True, metavar="ID")
@click.option(
    "--platform-id",
    "platform_post_id",
    required=True,
    help="Facebook {page}_{post}, Instagram media id, or LinkedIn URN.",
)
@click.option("--permalink", help="A link to the post, for a person to open if needed.")
def add(
    config_path: Path | None,
    post_id: str,
    listing_id: str,
    account_id: str,
    platform_post_id: str,
    permalink: str | None,
) -> None:
    """Record a post that was published for a listing."""
    try:
        spec = parse_spec(
            PostSpec,
            {
                "id": post_id,
                "listing_id": listing_id,
                "account_id": account_id,
                "platform_post_id": platform_post_id,
                "permalink": permalink,
            },
        )
    except SpecError as exc:
        fail(f"invalid input:\n{exc}", 2)
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            await store.record(rt.db, spec, iso(utcnow()))

    run(main)
    click.echo(f"post {post_id} recorded as published")


@posts.command("list")
@CONFIG_OPTION
@click.option("--listing", "listing_id", metavar="ID", help="Only this listing's posts.")
@click.option("--status", type=click.Choice(["published", "unpublished", "manual_required"]))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@JSON_OPTION
def list_(
    config_path: Path | None, listing_id: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """List posts; `--status manual_required` is the list of posts to remove by hand."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            rows = []
            for p in await store.list_some(rt.db, listing_id, status, limit):
                row = asdict(p)
                row["link"] = post_link(p.platform or "", p.platform_post_id, p.permalink)
                rows.append(row)
        echo_rows(
            rows,
            [
                "id",
                "listing_id",
                "platform",
                "status",
                "attempts",
                "next_attempt_at",
                "note",
                "last_error",
                "link",
            ],
            as_json,
        )

    run(main)


@posts.command("show")
@CONFIG_OPTION
@click.argument("post_id", metavar="ID")
@JSON_OPTION
def show(config_path: Path | None, post_id: str, as_json: bool) -> None:
    """Show one post with its attempts, last error and next attempt time."""
    settings = settings_from(config_path)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            row = await store.get(rt.db, post_id)
        if row is None:
            raise LookupError(f"no post {post_id!r} (see `mls-sync posts list`)")
        record = asdict(row)
        record["link"] = post_link(row.platform or "", row.platform_post_id, row.permalink)
        (echo_json if as_json else echo_record)(record)

    run(main)


@click.command()
@CONFIG_OPTION
@click.option("--listing", "listing_id", required=True, metavar="ID")
def unpublish(config_path: Path | None, listing_id: str) -> None:
    """Take down every published post of one listing now, whatever its status, and print
    what happened to each (the brief's unpublishListingPosts())."""
    settings = settings_from(config_path)

    async def main() -> RunReport:
        async with runtime_for(settings, before=echo_sandbox) as (rt, _):
            return await rt.engine.unpublish_listing(listing_id)

    report = run(main)
    # Every published post of the listing has a result, one that waits included (another
    # process taking posts down, an account that cannot be used): none means none is published.
    if not report.posts:
        click.echo(f"listing {listing_id} has no published post")
    for result in report.posts:
        outcome = result.outcome_name
        click.echo(f"{result.platform:9}  {result.post_id:20}  {outcome:12}  {result.detail}")
    r = report.run
    click.echo(
        f"run {r.id}: unpublished {r.posts_unpublished}, already gone "
        f"{r.posts_already_gone}, failed {r.posts_failed}, need a person {r.posts_manual}"
    )
