"""Scenario F: how soon a sale in the MLS is applied and its post taken down, by how the
daemon learns of it: pushed by the MLS (RCP-28), found by the poll of the change log between
cycles (events mode), or found by the next cycle (by_key).

`mls-sync run` runs as a subprocess; the sandbox MLS (one server per connection) and the
sandbox platforms run in this process, which plays the MLS: it sells an advertised listing
and, for the pushed connection, POSTs the event to the daemon at once. Each sale is timed
from the change in the MLS to (a) the daemon answering the listing as sold over its API,
asked every 10 ms, and (b) the DELETE of its Facebook post arriving at the sandbox platform.
Sales are one at a time, at random moments, so that the polled modes' wait is their
interval's luck, as in production. The polled modes run on short intervals (seconds, not
60 s and 15 minutes); docs/benchmarks.md says how their figures scale. Targets for push:
p95 under 2 s to the commit and under 3 s to the DELETE.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from daemon.composition import open_runtime
from daemon.config import load_settings
from daemon.encryption import generate_key
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.sandbox.platforms_server import SandboxPlatforms, build_platforms_app
from daemon.serving import serving
from tests.bench.bench import Sizes, write_config
from tests.e2e.daemon_process import API_TOKEN, Daemon
from tests.helpers import STATIC_TOKEN, add_account, add_connection, add_post, track
from tests.ports import free_port

LISTINGS = 100  # per connection
FB_TOKEN = "fb-bench-token"
# connection id -> (mode, its poll interval); the by_key one waits for the cycle
CONNECTIONS = {"pushed": ("events", 3600), "polled": ("events", None), "cycled": ("by_key", None)}


def scenario_f(sizes: Sizes, work: Path) -> dict[str, Any]:
    return anyio.run(_scenario_f, sizes, Path(tempfile.mkdtemp(dir=work)))


@dataclass(frozen=True)
class Market:
    """The benchmark's MLS, one sandbox server per connection, and its social platform."""

    servers: dict[str, SandboxMls]
    urls: dict[str, str]
    platforms: SandboxPlatforms
    platforms_url: str


@asynccontextmanager
async def market() -> AsyncIterator[Market]:
    servers = {cid: SandboxMls(static_tokens={STATIC_TOKEN}) for cid in CONNECTIONS}
    platforms = SandboxPlatforms()
    async with (
        serving(build_mls_app(servers["pushed"])) as pushed_url,
        serving(build_mls_app(servers["polled"])) as polled_url,
        serving(build_mls_app(servers["cycled"])) as cycled_url,
        serving(build_platforms_app(platforms)) as platforms_url,
    ):
        urls = {"pushed": pushed_url, "polled": polled_url, "cycled": cycled_url}
        yield Market(servers, urls, platforms, platforms_url)


async def _scenario_f(plan: Sizes, folder: Path) -> dict[str, Any]:
    async with market() as mls:
        key, port = generate_key(), free_port()

        def config_with(interval: int) -> Path:
            return write_config(
                folder,
                mls.platforms_url,
                sync={"interval_seconds": interval, "jitter_seconds": 0},
                daemon={"http_port": port},
                sandbox={"enabled": False},
            )

        # First with no cycle to speak of (push and the log's poll alone find the sales),
        # then with the short cycle, for the by_key connection.
        await _seed(config_with(3600), key, mls, plan.f_poll_seconds)
        rng = random.Random(7)
        async with _running(folder / "config.toml", port, key) as daemon:
            made = await daemon.call("POST", "/v1/mls-connections/pushed/push-token")
            token = str(made.json()["push_token"])
            pushed = await _sales(
                daemon,
                mls.servers["pushed"],
                mls.platforms,
                "pushed",
                plan.f_pushed,
                rng,
                0.5,
                token,
            )
            polled = await _sales(
                daemon,
                mls.servers["polled"],
                mls.platforms,
                "polled",
                plan.f_polled,
                rng,
                plan.f_poll_seconds,
                None,
            )
            last_run = (await daemon.call("GET", "/v1/runs?limit=1")).json()["items"][0]["id"]
        async with _running(config_with(plan.f_cycle_seconds), port, key, last_run) as daemon:
            cycled = await _sales(
                daemon,
                mls.servers["cycled"],
                mls.platforms,
                "cycled",
                plan.f_cycled,
                rng,
                plan.f_cycle_seconds,
                None,
            )
    polled["interval_seconds"] = plan.f_poll_seconds
    cycled["interval_seconds"] = plan.f_cycle_seconds
    return {"pushed": pushed, "polled": polled, "cycled": cycled}


@asynccontextmanager
async def _running(config: Path, port: int, key: str, after_run: int = 0) -> AsyncIterator[Daemon]:
    """`mls-sync run` on `config`, once its cycle at start (the first run after
    `after_run`) has ended."""
    daemon = Daemon.start(config, port, key)
    try:
        await daemon.wait_notify("READY=1", timeout=60)
        await daemon.wait_for_run(after_run + 1, timeout=60)
        yield daemon
    finally:
        daemon.stop()


async def _seed(
    config: Path,
    key: str,
    mls: Market,
    poll_seconds: int,
    listings: int = LISTINGS,
    rate: float | None = None,
) -> None:
    """`listings` advertised listings a connection, all active; `rate`: the connections'
    requests a second (the tests' own when None)."""
    settings = load_settings(config, {})
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": key}) as rt:
        await add_account(rt, "fb", "facebook", FB_TOKEN)
        for cid, (mode, poll) in CONNECTIONS.items():
            keys = [f"{cid}-{n:04d}" for n in range(listings)]
            for k in keys:
                mls.servers[cid].put(k, "Active")
                mls.platforms.publish("facebook", f"{cid}_{k}", FB_TOKEN, listing_key=k)
            fields: dict[str, Any] = {"mode": mode}
            if rate is not None:
                fields["rate_per_second"] = rate
            if mode == "events":
                fields["poll_seconds"] = poll or poll_seconds
            await add_connection(rt, mls.urls[cid], cid, **fields)
            await track(rt, cid, keys)
            for k in keys:
                await add_post(rt, f"p-{cid}-{k}", f"L-{k}", "fb", f"{cid}_{k}")


async def _sales(
    daemon: Daemon,
    mls: SandboxMls,
    platforms: SandboxPlatforms,
    cid: str,
    count: int,
    rng: random.Random,
    spread: float,
    push_token: str | None,
) -> dict[str, Any]:
    """`count` sales, one at a time, each after a random pause of up to `spread` seconds."""
    commits, deletes = [], []
    keys = [k for k in sorted(mls.records) if mls.status_of(k) == "Active"]
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
        for k in rng.sample(keys, count):
            await anyio.sleep(rng.uniform(0, spread))
            started = time.monotonic()
            mls.set_status(k, "Closed")
            if push_token is not None:
                await _push(client, cid, push_token, mls.entity_events[-1])
            commits.append(await _until_sold(client, k) - started)
            post = platforms.posts[f"{cid}_{k}"]
            with anyio.fail_after(60):
                while post.deleted_at is None:
                    await anyio.sleep(0.005)
            deletes.append(post.deleted_at - started)
    return {"sales": count, "commit": percentiles(commits), "delete": percentiles(deletes)}


async def _push(client: httpx.AsyncClient, cid: str, token: str, event: dict[str, Any]) -> None:
    answer = await client.post(
        f"/v1/mls-connections/{cid}/entity-events",
        json={"value": [event]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text


async def _until_sold(client: httpx.AsyncClient, key: str) -> float:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with anyio.fail_after(120):
        while True:
            answer = await client.get(f"/v1/listings/L-{key}", headers=headers)
            if answer.json()["status"] == "sold":
                return time.monotonic()
            await anyio.sleep(0.01)


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 and the longest, in seconds (None each when there are none)."""
    if not seconds:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(seconds)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))], 3)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 3)}
