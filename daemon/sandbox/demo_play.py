"""What `mls-sync demo` plays (daemon/sandbox/demo_cmd.py): about a minute of a compressed market,
on the sandbox, then a summary."""

from __future__ import annotations

import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from anyio.abc import TaskStatus
from fastapi import FastAPI
from rich.console import Console
from rich.live import Live
from rich.table import Table

from daemon import logs
from daemon.cli.common import run
from daemon.config import Settings, load_settings
from daemon.mail.worker import MailWorker
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.push import CONTEXT
from daemon.ops.webhooks import EndpointSpec
from daemon.outbound.worker import Deliveries
from daemon.platforms.registry import PLATFORM_NAMES
from daemon.sandbox.demo import (
    Consistency,
    DemoStats,
    PushedSale,
    check_consistency,
    inject_faults,
)
from daemon.sandbox.environment import SandboxSession, runtime_for
from daemon.sandbox.platforms_server import SandboxPost
from daemon.sandbox.webhook_sink import Receiver, receiving
from daemon.service.api import build_push_app
from daemon.service.change_log_polls import ChangeLogPolls
from daemon.service.event_watch import EventWatch
from daemon.service.push_routes import PUSH_PATH, PushInbox
from daemon.serving import serving
from daemon.store import events, listings, mail, webhooks
from daemon.store.database import Database
from daemon.sync.engine import PollOutcome

MAIL_SHOWN = 10  # subjects of the e-mail the sandbox agents got, in the summary


def play_demo(
    duration: float, interval: float, listings: int, seed: int, keep: Path | None
) -> None:
    """`mls-sync demo` (daemon/sandbox/demo_cmd.py), once its options are read."""
    logs.configure("error", "console")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="mls-sync-demo-") as scratch:
        folder = keep or Path(scratch)
        settings = _demo_settings(folder, listings, seed)

        async def play() -> tuple[DemoStats, Consistency]:
            return await _play(settings, duration, interval, seed, console)

        stats, consistency = run(play)
    console.print()
    console.print(_summary(stats, consistency, duration))
    sale = stats.pushed_sale
    pushed_late = sale is not None and (sale.sold_seconds is None or sale.down_seconds is None)
    if (
        not consistency.in_step
        or stats.webhooks_unverified
        or not stats.webhooks_in_order
        or pushed_late
    ):
        sys.exit(1)


def _demo_settings(folder: Path, listings: int, seed: int) -> Settings:
    config = folder / "demo.toml"
    folder.mkdir(parents=True, exist_ok=True)
    config.write_text(f"""
[database]
path = "demo.db"
[mls]
backoff_initial_seconds = 0.05
backoff_max_seconds = 0.5
[platforms]
retry_initial_seconds = 1
retry_max_seconds = 5
[sandbox]
enabled = true
listings = {listings}
moves_per_cycle = {max(listings // 15, 3)}
seed = {seed}
""")
    return load_settings(config, {})


async def _play(
    settings: Settings, duration: float, interval: float, seed: int, console: Console
) -> tuple[DemoStats, Consistency]:
    stats = DemoStats()
    rng = random.Random(seed)
    async with (
        runtime_for(settings) as (rt, sandbox),
        receiving() as app,
        anyio.create_task_group() as tg,
    ):
        # The events-mode connection's change log read between cycles, and its pushes
        # received on the daemon's own push route and applied at once, as `mls-sync run` does.
        async def between_cycles(outcome: PollOutcome) -> None:
            if outcome.report is not None:
                stats.add(outcome.report, cycle=False)

        polls = ChangeLogPolls(rt.db, rt.engine, on_poll=between_cycles)
        tg.start_soon(polls.run)
        # The listing the MLS sells and pushes at the end, kept out of the market's moves.
        candidate = _push_candidate(sandbox)
        inbox = PushInbox(rt.db, lambda: rt.settings.push, polls.pushed)
        push_url = await tg.start(_serve_push, build_push_app(inbox, rt.settings, "demo"))
        # E-mail to the sandbox agents, sent to the sandbox's SMTP sink as the daemon would;
        # every event signed and delivered to a stand-in app, as a webhook endpoint gets it.
        watch = EventWatch(rt.db)
        tg.start_soon(watch.run)
        tg.start_soon(MailWorker(rt.db, rt.settings.email, None, watch, poll_seconds=0.2).run)
        hooks = rt.settings.effective_webhooks()
        ops = Operations.on(OpsContext(rt.db, rt.box, webhooks=hooks, actor="demo"))
        made, secret = await ops.webhooks.create(EndpointSpec(f"{app.url}{APP_PATH}"))
        app.secrets[APP_PATH] = [secret]
        tg.start_soon(Deliveries(rt.db, rt.box, hooks, wake=watch.wait_after).run)
        started = time.monotonic()
        with Live(
            _table(stats, 0, duration),
            console=console,
            refresh_per_second=4,
            transient=False,
            redirect_stdout=False,
        ) as live:
            while time.monotonic() - started < duration:
                sparing = () if candidate is None else (candidate.key,)
                sandbox.move_market(settings.sandbox.moves_per_cycle, sparing)
                inject_faults(sandbox, rng, stats)
                stats.add(await rt.engine.sync_all("demo"))
                live.update(_table(stats, time.monotonic() - started, duration))
                await anyio.sleep(interval)
            # Settle: the faults stop, failed deletes come due again, one clean cycle.
            console.print("settling: faults off, one last cycle ...")
            sandbox.mls.faults.clear()
            for queue in sandbox.platforms.faults.values():
                queue.clear()
            await anyio.sleep(settings.platforms.retry_max_seconds)
            stats.add(await rt.engine.sync_all("demo"))
            live.update(_table(stats, time.monotonic() - started, duration))
            console.print("a sale the MLS pushes: from the MLS to the posts taken down ...")
            if candidate is not None:
                stats.pushed_sale = await _pushed_sale(rt.db, sandbox, push_url, candidate)
        consistency = await check_consistency(
            rt.db, sandbox.mls, sandbox.platforms, rt.engine.mapping
        )
        await _mail_sent(rt.db)
        stats.mail_subjects = [r.subject for r in sandbox.mail.received]
        await _delivered(rt.db, int(made["id"]))
        _count_deliveries(app, stats)
        await polls.stop(PUSH_PATIENCE_SECONDS)
        tg.cancel_scope.cancel()
    return stats, consistency


APP_PATH = "/mls-sync-events"
PUSH_PATIENCE_SECONDS = 30


async def _serve_push(app: FastAPI, *, task_status: TaskStatus[str]) -> None:
    async with serving(app) as url:
        task_status.started(url)
        await anyio.sleep_forever()


@dataclass(frozen=True)
class PushCandidate:
    connection_id: str
    token: str
    key: str
    posts: list[SandboxPost]


def _push_candidate(sandbox: SandboxSession) -> PushCandidate | None:
    """An active listing in the feed of a connection the sandbox MLS pushes for, with live
    posts; None when it has none (a very small sandbox)."""
    for connection_id, (token, keys) in sandbox.pushed_to.items():
        for key in keys:
            in_feed = sandbox.mls.records.get(key, {}).get("MlgCanView") is not False
            active = in_feed and sandbox.mls.status_of(key) == "Active"
            if active and (posts := _live_posts(sandbox, key)):
                return PushCandidate(connection_id, token, key, posts)
    return None


async def _pushed_sale(
    db: Database, sandbox: SandboxSession, push_url: str, sale: PushCandidate
) -> PushedSale:
    """Sells the candidate in the sandbox MLS and POSTs the event to the push route at once,
    as the MLS would; times the sale in mls-sync and its posts' takedown."""
    cid, key = sale.connection_id, sale.key
    listing_id = (await listings.ids_for_keys(db, cid, [key]))[key]
    started = time.monotonic()
    sandbox.mls.set_status(key, "Closed")
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        answer = await client.post(
            push_url + PUSH_PATH.format(connection_id=cid),
            json={"@reso.context": CONTEXT, "value": [sandbox.mls.entity_events[-1]]},
            headers={"Authorization": f"Bearer {sale.token}"},
        )
        answer.raise_for_status()
    sold = down = None
    with anyio.move_on_after(PUSH_PATIENCE_SECONDS):
        # The poller applies it, in another task: asked for every 5 ms, as a user would.
        while (row := await listings.get(db, listing_id)) is None or row.status != "sold":  # noqa: ASYNC110
            await anyio.sleep(0.005)
        sold = time.monotonic() - started
        while any(p.deleted_at is None for p in sale.posts):  # noqa: ASYNC110 - another task
            await anyio.sleep(0.005)
        down = max(float(p.deleted_at or 0) for p in sale.posts) - started
    return PushedSale(listing_id, sold, len(sale.posts), down)


def _live_posts(sandbox: SandboxSession, key: str) -> list[SandboxPost]:
    return [p for p in sandbox.platforms.posts.values() if p.listing_key == key and not p.deleted]


async def _delivered(db: Database, endpoint_id: int) -> None:
    """Waits (10 s at most) until the endpoint has every event of the log."""
    with anyio.move_on_after(10):
        while True:
            endpoint = await webhooks.get(db, endpoint_id)
            done = await webhooks.pending(db, endpoint_id) is None
            if endpoint is None or (done and endpoint.cursor >= await events.last_id(db)):
                return
            await anyio.sleep(0.1)


def _count_deliveries(app: Receiver, stats: DemoStats) -> None:
    arrived = list(dict.fromkeys(r.event["id"] for r in app.at(APP_PATH)))
    stats.webhooks.update({r.event["id"]: r.event["type"] for r in app.at(APP_PATH)}.values())
    stats.webhooks_unverified = len(app.unverified())
    stats.webhooks_in_order = arrived == sorted(arrived)


async def _mail_sent(db: Database) -> None:
    """Waits (10 s at most) for the mail worker to send what the last cycle gave it: to have
    read the whole log (on a busy machine it may not have looked at the last events yet, and
    then nothing waits in the outbox) and sent everything."""
    with anyio.move_on_after(10):
        while not await mail.caught_up(db):  # noqa: ASYNC110 - the worker runs in another task
            await anyio.sleep(0.1)


def _table(stats: DemoStats, elapsed: float, duration: float) -> Table:
    table = Table(title=f"mls-sync demo: {min(elapsed, duration):.0f} of {duration:.0f} s")
    table.add_column("cycles", justify="right")
    table.add_column("listings checked", justify="right")
    table.add_column("status changes", justify="left")
    table.add_column("posts taken down", justify="left")
    table.add_column("faults injected", justify="right")
    table.add_column("recorded errors", justify="right")
    table.add_row(
        str(stats.cycles),
        str(stats.listings_checked),
        ", ".join(f"{k} {v}" for k, v in stats.changes.most_common() if k != "first_seen") or "-",
        ", ".join(f"{k} {v}" for k, v in sorted(stats.unpublished.items())) or "-",
        str(sum(stats.faults.values())),
        str(stats.errors),
    )
    return table


def _summary(stats: DemoStats, consistency: Consistency, duration: float) -> Table:
    table = Table(title="mls-sync demo: summary", show_header=False)
    table.add_column("what")
    table.add_column("how many", justify="right")
    table.add_row("cycles", str(stats.cycles))
    table.add_row("listings checked", str(stats.listings_checked))
    table.add_row("MLS requests", str(stats.mls_requests))
    for kind, n in sorted(stats.changes.items()):
        table.add_row(f"status changes: {kind}", str(n))
    for platform in PLATFORM_NAMES:
        table.add_row(f"posts taken down: {platform}", str(stats.unpublished[platform]))
    for kind, n in sorted(stats.faults.items()):
        table.add_row(f"fault injected: {kind}", str(n))
    table.add_row("errors recorded in runs", str(stats.errors))
    table.add_row("e-mail notifications sent", str(len(stats.mail_subjects)))
    for subject in stats.mail_subjects[:MAIL_SHOWN]:
        table.add_row(f"  e-mail: {subject}", "")
    if len(stats.mail_subjects) > MAIL_SHOWN:
        table.add_row("  e-mail: ... and more", str(len(stats.mail_subjects) - MAIL_SHOWN))
    table.add_row("webhook events delivered (signed)", str(sum(stats.webhooks.values())))
    for kind, n in sorted(stats.webhooks.items()):
        table.add_row(f"  webhook: {kind}", str(n))
    verified = "yes" if not stats.webhooks_unverified else f"NO: {stats.webhooks_unverified} not"
    table.add_row("  every signature verified", verified)
    table.add_row("  in event order", "yes" if stats.webhooks_in_order else "NO")
    in_step = getattr(consistency, "in_step", False)
    table.add_row("in step with the MLS at the end", "yes" if in_step else f"NO: {consistency}")
    if left := getattr(consistency, "left_to_a_person", []):
        # A count: the posts are listed by `mls-sync manual-actions` (a long id here would
        # widen the value column and wrap every label).
        table.add_row("  posts left to a person (no API deletes them)", str(len(left)))
    if (sale := stats.pushed_sale) is None:
        none_left = "none (its connection has no active listing with a post)"
        table.add_row(f"a sale the MLS pushed: {none_left}", "")
    else:
        table.add_row(f"a sale the MLS pushed: {sale.listing_id}", "")
        late = f"NOT within {PUSH_PATIENCE_SECONDS} s"
        sold = late if sale.sold_seconds is None else f"{sale.sold_seconds:.2f} s"
        table.add_row("  sold in mls-sync after", sold)
        down = late if sale.down_seconds is None else f"{sale.down_seconds:.2f} s"
        table.add_row(f"  its {sale.posts} post(s) taken down after", down)
    return table
