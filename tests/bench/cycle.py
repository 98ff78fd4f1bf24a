"""One daemon cycle in a process of its own, reporting its own cost as one JSON line.

    python -m tests.bench.cycle --config PATH [--unpublish-only | --deliver | --at UNIX_TIME]
        [--engine NAME]

CPU is this process's user+system time during the cycle, and the system time apart (the
kernel's part); peak RSS is the process's high-water mark (VmHWM), start-up included, which
is what a daemon pays. Not ru_maxrss: Linux carries that across exec, so it would report the
benchmark's own process, which forked this one, when that process is the larger (it is,
once it has prepared a million listings). With --deliver, the webhook worker runs beside
the cycle as in the daemon (in its process: its CPU is not counted here), and the process
waits, after the cycle, until every event is delivered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

import daemon
from daemon import composition, eventloop, logs
from daemon.composition import Runtime, open_runtime
from daemon.config import Settings, load_settings
from daemon.service.delivery_process import DeliveryProcess, Job
from daemon.store import events, runs, webhooks
from daemon.store.database import Database
from daemon.store.posts import DueScope
from daemon.timestamps import iso, utcnow
from tests.bench.bench import (
    cpu_seconds_in,
    own_cpu_seconds,
    own_kernel_seconds,
    process_cpu_seconds,
)

# A candidate engine that is not shipped: the httpx-aiohttp package's transport, measured
# beside the shipped ones (docs/benchmarks.md "The HTTP engine").
ENGINES = ("aiohttp", "httpcore")
HTTPX_AIOHTTP = "httpx-aiohttp"


def httpx_aiohttp_transport(settings: Settings, bound: int) -> httpx.AsyncBaseTransport:
    """The package's transport, with the shipped engine's pool size and no cookie jar."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=bound), cookie_jar=aiohttp.DummyCookieJar()
        )

    return AiohttpTransport(client=session)


def peak_rss_kb() -> int:
    """This process's resident high-water mark since it started (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _main_thread_cpu() -> float:
    """The event loop's thread alone (the rest is SQLite's threads and the interpreter's)."""
    return cpu_seconds_in(Path(f"/proc/self/task/{os.getpid()}/stat"))


async def measure(
    config: Path,
    unpublish_only: bool,
    deliver: bool,
    key: str,
    overrides: dict[str, str],
    at: float | None = None,
) -> dict[str, Any]:
    settings = load_settings(config, overrides)
    # Logged as the daemon logs (JSON lines, to stderr, which the benchmark reads and drops),
    # so their cost is counted: a post taken down is one line at the shipped level.
    logs.configure(settings.logging.level, "json", sys.stderr)
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": key}) as rt:
        # Before measuring, as a daemon does at start (the rest of what a first cycle in
        # a process pays, each credential's decryption and each server's client, is measured).
        composition.prepare_mls_reading(settings)
        if deliver:
            async with delivering(rt, key) as (drained, delivery_cpu):
                cpu = await delivery_cpu()
                figures = await _measured(rt, unpublish_only)
                started = time.perf_counter()
                await drained()
                figures["drain_seconds"] = round(time.perf_counter() - started, 3)
                figures["delivery_cpu_seconds"] = round(await delivery_cpu() - cpu, 3)
                return figures
        return await _measured(rt, unpublish_only, at)


@asynccontextmanager
async def delivering(
    rt: Runtime, key: str
) -> AsyncIterator[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[float]]]]:
    """The daemon's webhook worker, in its process, for as long as the block runs; yields a
    wait until every endpoint has every event delivered, and the worker process's CPU."""
    settings = rt.settings
    job = Job.of(settings, key)
    async with (
        rt.db.reader() as reader,
        anyio.create_task_group() as tg,
    ):
        process = DeliveryProcess(job, _NoMetrics(), reader)
        tg.start_soon(process.run)

        async def drained() -> None:
            while not await _all_delivered(reader):
                await anyio.sleep(0.02)

        measured: list[int] = []

        async def cpu() -> float:
            # Once it delivers: a daemon's delivery process has started (its imports, its
            # connections) long before a cycle, so that is not counted in the cycle's figures.
            with anyio.fail_after(60):
                await process.started.wait()
            assert process.pid is not None
            measured.append(process.pid)
            if len(set(measured)) > 1:
                raise RuntimeError("the delivery process was restarted: its CPU is not known")
            return process_cpu_seconds(process.pid)

        yield drained, cpu
        process.stop()


class _NoMetrics:
    def delivery_results(self, result: str, count: int) -> None:
        pass

    def set_oldest_undelivered(self, ages: dict[int, float]) -> None:
        pass


async def _all_delivered(db: Database) -> bool:
    last = await events.last_id(db)
    for endpoint_id in await webhooks.enabled_ids(db):
        endpoint = await webhooks.get(db, endpoint_id)
        if endpoint is None or endpoint.cursor < last:
            return False
        if await webhooks.pending(db, endpoint_id) is not None:
            return False
    return True


async def _measured(rt: Runtime, unpublish_only: bool, at: float | None = None) -> dict[str, Any]:
    if at is not None:  # as the clock's cycle of several daemons: all begin at the slot
        await anyio.sleep(max(0.0, at - time.time()))
    cpu, loop_cpu, wall = own_cpu_seconds(), _main_thread_cpu(), time.perf_counter()
    kernel = own_kernel_seconds()
    if unpublish_only:
        run_id = await runs.start(rt.db, "bench", "all", rt.engine.holder, iso(utcnow()))
        results = await rt.engine.unpublisher.reconcile(run_id, DueScope())
        seconds = time.perf_counter() - wall
        run = await runs.finish(rt.db, run_id, iso(utcnow()), failed=False)
        extra = {"posts": len(results)}
    else:
        report = await rt.engine.sync_all("bench" if at is None else "schedule")
        seconds = time.perf_counter() - wall
        run = report.run
        extra = {}
    cpu, loop_cpu = own_cpu_seconds() - cpu, _main_thread_cpu() - loop_cpu
    kernel = own_kernel_seconds() - kernel
    return {
        "wall_seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "loop_thread_cpu_seconds": round(loop_cpu, 3),
        "kernel_seconds": round(kernel, 3),
        "peak_rss_mb": round(peak_rss_kb() / 1024, 1),
        "cpus": sorted(os.sched_getaffinity(0)),  # the processors it could run on
        "checkout": str(Path(daemon.__file__).resolve().parents[1]),  # whose code ran
        "mls_requests": run.mls_requests,
        "listings_checked": run.listings_checked,
        "status_changes": run.status_changes,
        "posts_unpublished": run.posts_unpublished,
        "errors": run.errors,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--unpublish-only", action="store_true")
    parser.add_argument("--deliver", action="store_true")
    parser.add_argument("--engine", choices=[*ENGINES, HTTPX_AIOHTTP])
    parser.add_argument(
        "--at",
        type=float,
        metavar="UNIX_TIME",
        help="wait until then (a slot's start of the config's [sync] interval_seconds), then "
        "run the clock's cycle: the connections no process synced in the slot",
    )
    args = parser.parse_args()
    key = os.environ["MLS_SYNC_SECRET_KEY"]
    overrides: dict[str, str] = {}
    if args.engine == HTTPX_AIOHTTP:
        composition.mls_transport = httpx_aiohttp_transport
    elif args.engine:
        overrides["MLS_SYNC_MLS__HTTP_ENGINE"] = args.engine
    figures = eventloop.run(
        measure, args.config, args.unpublish_only, args.deliver, key, overrides, args.at
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
