"""posts add|list|show|forget|removed-by-hand, and unpublish: the social posts of listings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from daemon.cli.common import (
    CONFIG_OPTION,
    JSON_OPTION,
    choice_of,
    fields_or_fail,
    record_command,
    removal_command,
    run,
)
from daemon.cli.generic import list_command_for, show_command_for
from daemon.cli.render import echo_done, echo_environment, echo_json, echo_table
from daemon.cli.surface import call, surface
from daemon.enums import PostStatus
from daemon.ops.queries import PostQuery
from daemon.platforms.registry import PLATFORM_NAMES
from daemon.specs import PostSpec

LIST_COLUMNS = [
    "id",
    "listing_id",
    "platform",
    "status",
    "attempts",
    "next_attempt_at",
    "note",
    "last_error",
    "link",
]


@click.group()
def posts() -> None:
    """Record and inspect the social posts of listings.

    A post is `published` until mls-sync takes it down (`unpublished`) or finds that only a
    person can (`manual_required`, listed with a link by `posts list --status manual_required`;
    once done, say so with `posts removed-by-hand ID`).
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
@JSON_OPTION
def add(
    config_path: Path | None,
    post_id: str,
    listing_id: str,
    account_id: str,
    platform_post_id: str,
    permalink: str | None,
    as_json: bool,
) -> None:
    """Record a post that was published for a listing."""
    given = {
        "listing_id": listing_id,
        "account_id": account_id,
        "platform_post_id": platform_post_id,
        "permalink": permalink,
    }
    fields = fields_or_fail(PostSpec, post_id, given)
    where = surface(config_path)

    async def main() -> tuple[dict[str, Any], bool]:
        async with where.open() as (ops, _):
            return await ops.posts.put(post_id, fields, values=not where.is_remote)

    view, _ = run(main)
    echo_done(view, as_json, f"post {post_id} recorded as published")


list_command_for(
    posts,
    PostQuery,
    lambda ops, query: ops.posts.list(query),
    LIST_COLUMNS,
    "List posts; `--status manual_required` is the list of posts to remove by hand.",
    click.option("--listing", "listing_id", metavar="ID", help="Only this listing's posts."),
    click.option("--platform", type=click.Choice(PLATFORM_NAMES), help="Only this platform's."),
    click.option("--status", type=choice_of(PostStatus)),
    click.option("--user", metavar="ID", help="Only posts of this user's listings."),
)


show_command_for(
    posts,
    "post_id",
    lambda ops, post_id: ops.posts.get(post_id),
    "Show one post with its attempts, last error and next attempt time.",
)


@posts.command("removed-by-hand")
@record_command("post_id")
def removed_by_hand(config_path: Path | None, post_id: str, as_json: bool) -> None:
    """Say that a person took the post down on its platform (a manual_required post, once
    done): it is unpublished from now on."""
    done = call(config_path, lambda ops: ops.posts.removed_by_hand(post_id))
    echo_done(done, as_json, f"post {post_id} recorded as removed by hand")


@posts.command("forget")
@removal_command(
    "post_id",
    "Also when the post is live: nothing will take it down or list it for a person.",
)
def forget(config_path: Path | None, post_id: str, force: bool, as_json: bool) -> None:
    """Drop a post's record (refused while it is live, unless --force)."""
    done = call(config_path, lambda ops: ops.posts.forget(post_id, force=force))
    echo_done(done, as_json, f"post {post_id} forgotten")


@click.command()
@CONFIG_OPTION
@click.option("--listing", "listing_id", required=True, metavar="ID")
@JSON_OPTION
def unpublish(config_path: Path | None, listing_id: str, as_json: bool) -> None:
    """Take down every published post of one listing now, whatever its status, and print
    what happened to each."""
    where = surface(config_path)

    async def main() -> dict[str, Any]:
        async with where.open(engine=True) as (ops, environment):
            echo_environment(environment, err=as_json)
            return await ops.listings.unpublish(listing_id, "manual")

    report = run(main)
    if as_json:
        echo_json(report)
        return
    # Every published post of the listing has a result, one that waits included (another
    # process taking posts down, an account that cannot be used): none means none is published.
    if not report["posts"]:
        click.echo(f"listing {listing_id} has no published post")
    for result in report["posts"]:
        click.echo(
            f"{result['platform']:9}  {result['post_id']:20}  {result['outcome']:12}  "
            f"{result['detail']}"
        )
    click.echo(
        f"run {report['id']}: unpublished {report['posts_unpublished']}, already gone "
        f"{report['posts_already_gone']}, failed {report['posts_failed']}, need a person "
        f"{report['posts_manual']}"
    )


@click.command("manual-actions")
@CONFIG_OPTION
@JSON_OPTION
def manual_actions(config_path: Path | None, as_json: bool) -> None:
    """What only a person can do: posts to remove by hand (with links; say so afterwards with
    `posts removed-by-hand ID`), accounts and connections that need new credentials
    (`accounts add` / `connections add` with the same --id), and webhook endpoints that were
    disabled (fix the receiver, then `webhooks enable ID`)."""
    todo = call(config_path, lambda ops: ops.sync.manual_actions())
    if as_json:
        echo_json(todo)
        return
    sections = [
        ("posts_to_remove_by_hand", ["id", "listing_id", "platform", "note", "link"]),
        ("accounts_to_reauthenticate", ["id", "user_id", "platform", "last_error"]),
        ("connections_to_reauthenticate", ["id", "name", "last_error"]),
        ("webhook_endpoints_disabled", ["id", "url", "disabled_reason"]),
    ]
    for key, columns in sections:
        shown, total = len(todo[key]), todo["totals"][key]
        click.echo(
            f"{key.replace('_', ' ')}: {total:,}" + (f" ({shown:,} shown)" if shown < total else "")
        )
        if todo[key]:
            echo_table(todo[key], columns)
        click.echo("")
