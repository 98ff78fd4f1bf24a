"""webhooks add|list|show|remove|enable|disable|rotate-secret|deliveries|attempts|replay:
signed outbound webhook endpoints (docs/webhooks.md)."""

from __future__ import annotations

from pathlib import Path

import click

from daemon.cli.common import CONFIG_OPTION, JSON_OPTION
from daemon.cli.render import echo_done, echo_json, echo_record, echo_table, echo_view
from daemon.cli.surface import call
from daemon.ops.views import View
from daemon.ops.webhooks import EndpointSpec

NOT_AGAIN = "This secret is shown only now: give it to the receiver, which verifies with it."
ENDPOINT_COLUMNS = ["id", "url", "event_types", "user_id", "enabled", "failing_since", "cursor"]
DELIVERY_COLUMNS = ["id", "event_id", "state", "attempts", "last_status", "next_attempt_at"]
ATTEMPT_COLUMNS = ["id", "at", "status_code", "latency_ms", "error", "replay"]
ENDPOINT_ID = click.argument("endpoint_id", metavar="ID", type=click.IntRange(min=1))
DELIVERY_ID = click.argument("delivery_id", metavar="DELIVERY", type=click.IntRange(min=1))


@click.group()
def webhooks() -> None:
    """Manage webhook endpoints: each receives the events it asks for, in order, signed
    as Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature).

    Each endpoint has a `whsec_` signing secret, printed once when it is added or rotated;
    it is stored encrypted with the secret key and never printed again.
    """


def _echo_secret(made: View, secret: str, as_json: bool, line: str) -> None:
    """The secret alone on stdout (or the JSON with it); the note on stderr."""
    if as_json:
        echo_json({**made, "secret": secret})
    else:
        click.echo(secret)
    click.echo(f"{line} {NOT_AGAIN}", err=True)


@webhooks.command("add")
@CONFIG_OPTION
@click.argument("url")
@click.option(
    "--type",
    "event_types",
    multiple=True,
    metavar="TYPE",
    help="An event type (listing.sold), a prefix (listing.*) or *; repeat for more. "
    "Default: every type.",
)
@click.option("--user", "user_id", help="Only this user's events.")
@click.option("--description", help="For people: whose receiver it is.")
@click.option(
    "--after-event",
    type=click.IntRange(min=0),
    help="Deliver the events after this id (0: every event kept). Default: from now on.",
)
@JSON_OPTION
def add(
    config_path: Path | None,
    url: str,
    event_types: tuple[str, ...],
    user_id: str | None,
    description: str | None,
    after_event: int | None,
    as_json: bool,
) -> None:
    """Register an endpoint (https; http only to loopback where allowed) and print its
    signing secret, once, on stdout."""
    spec = EndpointSpec(url, event_types, user_id, description, after_event)
    made, secret = call(config_path, lambda ops: ops.webhooks.create(spec))
    _echo_secret(made, secret, as_json, f"endpoint {made['id']} added.")


@webhooks.command("list")
@CONFIG_OPTION
@JSON_OPTION
def list_(config_path: Path | None, as_json: bool) -> None:
    """List the endpoints (never their secrets)."""
    found = call(config_path, lambda ops: ops.webhooks.list())
    if as_json:
        echo_json(found)
    else:
        echo_table(
            [{**e, "event_types": ",".join(e["event_types"])} for e in found], ENDPOINT_COLUMNS
        )


@webhooks.command("show")
@CONFIG_OPTION
@ENDPOINT_ID
@JSON_OPTION
def show(config_path: Path | None, endpoint_id: int, as_json: bool) -> None:
    """Show one endpoint (its secret shows as <set>)."""
    found = call(config_path, lambda ops: ops.webhooks.get(endpoint_id))
    if as_json:
        echo_json(found)
    else:
        echo_record({**found, "event_types": ",".join(found["event_types"])})


@webhooks.command("remove")
@CONFIG_OPTION
@ENDPOINT_ID
@JSON_OPTION
def remove(config_path: Path | None, endpoint_id: int, as_json: bool) -> None:
    """Remove an endpoint, its deliveries and their attempts."""
    done = call(config_path, lambda ops: ops.webhooks.remove(endpoint_id))
    echo_done(done, as_json, f"endpoint {endpoint_id} removed")


@webhooks.command("enable")
@CONFIG_OPTION
@ENDPOINT_ID
@JSON_OPTION
def enable(config_path: Path | None, endpoint_id: int, as_json: bool) -> None:
    """Deliver again, from where it stopped, with a fresh 3-day retry window."""
    done = call(config_path, lambda ops: ops.webhooks.enable(endpoint_id))
    echo_done(done, as_json, f"endpoint {endpoint_id} enabled")


@webhooks.command("disable")
@CONFIG_OPTION
@ENDPOINT_ID
@JSON_OPTION
def disable(config_path: Path | None, endpoint_id: int, as_json: bool) -> None:
    """Stop delivering; its events wait until it is enabled again."""
    done = call(config_path, lambda ops: ops.webhooks.disable(endpoint_id))
    echo_done(done, as_json, f"endpoint {endpoint_id} disabled")


@webhooks.command("rotate-secret")
@CONFIG_OPTION
@ENDPOINT_ID
@JSON_OPTION
def rotate_secret(config_path: Path | None, endpoint_id: int, as_json: bool) -> None:
    """Print a new signing secret, once; the old one keeps signing beside it until
    [webhooks] secret_overlap_seconds have passed (24 hours by default)."""
    made, secret = call(config_path, lambda ops: ops.webhooks.rotate_secret(endpoint_id))
    until = made["previous_secret_until"]
    _echo_secret(
        made,
        secret,
        as_json,
        f"endpoint {endpoint_id}: new secret; the old one signs until {until}.",
    )


@webhooks.command("deliveries")
@CONFIG_OPTION
@ENDPOINT_ID
@click.option("--before", type=click.IntRange(min=1), help="Only deliveries with a smaller id.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@JSON_OPTION
def deliveries(
    config_path: Path | None, endpoint_id: int, before: int | None, limit: int, as_json: bool
) -> None:
    """An endpoint's deliveries, newest first."""
    found = call(config_path, lambda ops: ops.webhooks.deliveries(endpoint_id, before, limit))
    if as_json:
        echo_json(found)
    else:
        echo_table(found, DELIVERY_COLUMNS)


@webhooks.command("attempts")
@CONFIG_OPTION
@DELIVERY_ID
@JSON_OPTION
def attempts(config_path: Path | None, delivery_id: int, as_json: bool) -> None:
    """A delivery and every attempt of it (status, latency, error)."""
    found = call(config_path, lambda ops: ops.webhooks.attempts(delivery_id))
    if as_json:
        echo_json(found)
        return
    echo_record(found)
    click.echo()
    echo_table(found["items"], ATTEMPT_COLUMNS)


@webhooks.command("replay")
@CONFIG_OPTION
@DELIVERY_ID
@JSON_OPTION
def replay(config_path: Path | None, delivery_id: int, as_json: bool) -> None:
    """Send a delivery's event once more, now (signed afresh, the same webhook-id)."""
    sent = call(config_path, lambda ops: ops.webhooks.replay(delivery_id))
    echo_view(sent, as_json)
