"""Scenario D: webhook deliveries during a by_key cycle of scenario A's size.

Each round moves `d_events` listings and runs one cycle without an endpoint, then moves as
many again and runs one with an endpoint that takes every event, the webhook worker running
beside the cycle as in the daemon, to a receiver in a process of its own
(tests/bench/receiver.py) that verifies every signature. Figures: the lag of each event from
its commit to its arrival (p50, p99, max), the time after the cycle until the last event
arrived, and the cycle's slowdown (median wall time with deliveries over without).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from daemon.composition import open_runtime
from daemon.config import WebhookSettings, load_settings
from daemon.encryption import generate_key
from daemon.ops.context import OpsContext
from daemon.ops.manager import Operations
from daemon.ops.webhooks import EndpointSpec
from daemon.service.delivery_child import lower_priority
from tests.bench.bench import (
    Sizes,
    cycle,
    median_run,
    move,
    prepare,
    process_cpu_seconds,
    sandbox,
    write_config,
)
from tests.paths import REPO


@contextmanager
def receiver() -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.receiver"],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
        # As low in priority as the delivery process: an app's receiver runs on a machine of
        # its own, where it takes no CPU from the cycle. (docs/benchmarks.md, scenario D.)
        preexec_fn=lambda: lower_priority(WebhookSettings().niceness),
    )
    try:
        assert proc.stdout is not None
        yield str(json.loads(proc.stdout.readline())["url"]), proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def _endpoint(config: Path, key: str, url: str | None) -> str | None:
    """Removes every endpoint, then adds one for `url` (if given) taking the events from now
    on; returns its secret."""
    settings = load_settings(config, {})
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": key}) as rt:
        ctx = OpsContext(rt.db, rt.box, webhooks=settings.effective_webhooks(), actor="bench")
        ops = Operations.on(ctx)
        for endpoint in await ops.webhooks.list():
            await ops.webhooks.remove(endpoint["id"])
        if url is None:
            return None
        _, secret = await ops.webhooks.create(EndpointSpec(url))
        return secret


def scenario_d(sizes: Sizes, work: Path) -> dict[str, Any]:
    with sandbox(sizes.feeds, sizes.per_feed) as server, receiver() as (hooks, receiver_pid):
        folder = Path(tempfile.mkdtemp(dir=work))
        key = generate_key()
        config = write_config(folder, server.platforms, webhooks={"allow_http_loopback": True})
        prepare(config, key, server.mls, sizes.feeds, sizes.per_feed, key_filter="in")
        cycle(config, key, server)  # every listing first seen
        without, delivering = [], []
        for n in range(sizes.d_repeats):
            # Sold one round, back on the market the next: each round has its changes to make.
            to = "Closed" if n % 2 == 0 else "Active"
            move(server.mls, sizes.d_events, to)
            without.append(cycle(config, key, server))
            secret = anyio.run(_endpoint, config, key, f"{hooks}/hooks")
            httpx.post(f"{hooks}/secret", content=secret, timeout=10)
            move(server.mls, sizes.d_events, to)
            receiver_cpu = process_cpu_seconds(receiver_pid)
            result = cycle(config, key, server, deliver=True)
            receiver_cpu = round(process_cpu_seconds(receiver_pid) - receiver_cpu, 3)
            received = httpx.get(f"{hooks}/stats", timeout=10).json()
            received["receiver_cpu_seconds"] = receiver_cpu
            anyio.run(_endpoint, config, key, None)
            delivering.append({**result, **received})
    base, hooked = median_run(without), median_run(delivering)
    hooked["lag_p99_runs"] = [r["lag_p99_seconds"] for r in delivering]
    return {
        "listings": sizes.feeds * sizes.per_feed,
        "moved": sizes.d_events,
        "without": base,
        "with": hooked,
        "slowdown": round(hooked["wall_seconds"] / base["wall_seconds"] - 1, 3),
    }
