"""Scenario H: scenario F at the issue's size and intervals. 1,000 sales per way, at random
moments over one 15-minute cycle, all three ways at once in one `mls-sync run`: pushed by the
MLS (RCP-28), found by the poll of the change log every 60 s, found by the next by_key cycle
of 15 minutes. It takes about 17 minutes, so it is run on its own (`--only h`).

The sales overlap, so each is timed afterwards rather than watched: the commit from its audit
row (`status_changes.changed_at`, the transaction's time) against the wall clock of the sale,
and the DELETE from the sandbox platform's record of its arrival against the sale's monotonic
clock. The MLS connections keep the shipped rate of 2 requests a second; the Facebook limit is
raised, so that a cycle's thousand takedowns measure the daemon rather than the platform's
queue (one account never sells a thousand listings in 15 minutes).
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from daemon.encryption import generate_key
from daemon.sandbox.mls_server import SandboxMls
from daemon.sandbox.platforms_server import SandboxPlatforms
from daemon.timestamps import parse_iso
from tests.bench.bench import Sizes, write_config
from tests.bench.detection import CONNECTIONS, _push, _running, _seed, market, percentiles
from tests.ports import free_port

MLS_RATE = 2.0  # requests a second, per connection: the shipped default
FB_RATE = 200.0
SETTLE_SECONDS = 120  # after the cycle that finds the last sales, for their DELETEs


@dataclass
class Sale:
    way: str
    key: str
    wall: float  # time.time() of the change in the MLS
    mono: float  # time.monotonic() of it


def scenario_h(sizes: Sizes, work: Path) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(dir=work))
    return anyio.run(_scenario_h, sizes, folder, generate_key())


async def _scenario_h(plan: Sizes, folder: Path, key: str) -> dict[str, Any]:
    async with market() as mls:
        port = free_port()
        config = write_config(
            folder,
            mls.platforms_url,
            sync={"interval_seconds": plan.h_cycle_seconds, "jitter_seconds": 0},
            daemon={"http_port": port},
            sandbox={"enabled": False},
            platforms={"facebook_rate_per_second": FB_RATE},
        )
        listings = plan.h_changes + plan.h_changes // 10
        await _seed(config, key, mls, plan.h_poll_seconds, listings, MLS_RATE)
        async with _running(config, port, key) as daemon:
            made = await daemon.call("POST", "/v1/mls-connections/pushed/push-token")
            token = str(made.json()["push_token"])
            status = (await daemon.get("/status")).json()
            window = (parse_iso(status["next_run"]).timestamp() - time.time()) - 5
            sales = await _sell(mls.servers, plan.h_changes, window, daemon.url, token)
            # (the sales took the window: the cycle that finds the last of them is next)
            await _settle(mls.platforms, sales, plan.h_cycle_seconds + SETTLE_SECONDS)
    committed = _committed(folder / "bench.db")
    figures: dict[str, Any] = {"window_seconds": round(window)}
    for way in CONNECTIONS:
        mine = [s for s in sales if s.way == way]
        commits = [committed[s.key] - s.wall for s in mine if s.key in committed]
        deletes = [
            deleted - s.mono
            for s in mine
            if (deleted := mls.platforms.posts[f"{way}_{s.key}"].deleted_at) is not None
        ]
        figures[way] = {
            "sales": len(mine),
            "committed": len(commits),
            "deleted": len(deletes),
            "commit": percentiles(commits),
            "delete": percentiles(deletes),
        }
    figures["polled"]["interval_seconds"] = plan.h_poll_seconds
    figures["cycled"]["interval_seconds"] = plan.h_cycle_seconds
    return figures


async def _sell(
    servers: dict[str, SandboxMls], count: int, window: float, daemon_url: str, token: str
) -> list[Sale]:
    """`count` sales a way, each at a random moment of the next `window` seconds."""
    rng = random.Random(7)
    plan = sorted(
        (rng.uniform(0, window), way, k)
        for way, mls in servers.items()
        for k in rng.sample(sorted(mls.records), count)
    )
    sales: list[Sale] = []
    started = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=daemon_url, timeout=30) as client,
        anyio.create_task_group() as tg,
    ):
        for offset, way, k in plan:
            await anyio.sleep(max(0.0, started + offset - time.monotonic()))
            sales.append(Sale(way, k, time.time(), time.monotonic()))
            servers[way].set_status(k, "Closed")
            if way == "pushed":  # the MLS pushes at once; the next sale does not wait for it
                tg.start_soon(_push, client, way, token, servers[way].entity_events[-1])
    return sales


async def _settle(platforms: SandboxPlatforms, sales: list[Sale], patience: float) -> None:
    """Until every sold listing's post is deleted, or `patience` runs out."""
    with anyio.move_on_after(patience):
        while any(platforms.posts[f"{s.way}_{s.key}"].deleted_at is None for s in sales):
            await anyio.sleep(1)


def _committed(database: Path) -> dict[str, float]:
    """Listing key -> when its sale committed (the audit row's transaction time)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT l.listing_key, c.changed_at FROM status_changes AS c "
            "JOIN listings AS l ON l.id = c.listing_id WHERE c.to_status = 'sold'"
        ).fetchall()
    return {str(k): parse_iso(str(at)).timestamp() for k, at in rows}
