"""Scenario J's floor: the by_key cycle's requests with nothing of the sync around them.

    python -m tests.bench.bare_requests --config PATH --through httpx|client

Against the database the benchmark prepared (its connections, their tracked keys and their
encrypted tokens), opened as the daemon opens it, each connection's tracked keys are asked in
the batches the daemon makes (`daemon/mls/query.py` `key_batches`), as many in flight as its
request bound, through either:
- `httpx`: the daemon's HTTP client for the server alone (`ServerPools`, httpx on the shipped
  engine), one GET per batch with the URL and headers the daemon sends, the body read,
  nothing parsed: what the HTTP client costs;
- `client`: the daemon's MLS client (`MlsAccess.client_for`, `MlsClient.fetch_batch`): its
  pace, request bound, retries, tokens, URL checks, and each page read and checked as a
  sync reads it. Nothing is planned or written.
What a cycle costs beyond the second is its sync's own work: reading the store, planning and
writing each listing (docs/benchmarks.md "The HTTP engine"). The key MLS_SYNC_SECRET_KEY is
taken from the environment, as tests/bench/cycle.py takes it. Prints this process's CPU during
the requests (not while the database is opened and read) as one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from daemon import composition, eventloop, logs
from daemon.composition import open_runtime
from daemon.config import load_settings
from daemon.enums import KeyFilter
from daemon.mls.client import MlsClient
from daemon.mls.engine_client import EngineClient
from daemon.mls.query import SELECT, by_key_url, key_batches, page_size_preference
from daemon.store import connections, listings
from daemon.store.records import ConnectionRow
from tests.bench.bench import own_cpu_seconds, own_kernel_seconds

Ask = Callable[[], Awaitable[None]]


async def send_all(config: Path, key: str, through: str) -> dict[str, Any]:
    settings = load_settings(config, {})
    logs.configure(settings.logging.level, "json", sys.stderr)
    async with open_runtime(settings, {"MLS_SYNC_SECRET_KEY": key}) as rt:
        # Before measuring, as a daemon does at start: the pages' validators, for
        # `--through client` (the engine is loaded with the clients, below, before it too).
        composition.prepare_mls_reading(settings)
        access, box = rt.engine.access, rt.require_box()
        each: list[list[Ask]] = []  # per connection
        for row in await connections.list_all(rt.db, active_only=True):
            keys = [t.listing_key for t in await listings.tracked(rt.db, row.id)]
            form = KeyFilter(row.key_filter)
            # The batches as the daemon makes them, by a client of their own: the one that
            # asks builds each URL again, in the measured time, once, as a sync's does.
            splitter = access.client_for(row, lambda: None)
            batches = list(
                key_batches(
                    keys, form, row.batch_size, splitter.url_length, settings.mls.max_url_length
                )
            )
            if through == "client":
                client = access.client_for(row, lambda: None)
                each.append([_fetch(client, batch) for batch in batches])
                continue
            http = access.http.for_url(row.base_url)
            headers = {
                "Authorization": f"Bearer {box.decrypt(row.secret_encrypted)}",
                "Accept": "application/json",
                "Prefer": page_size_preference(row.page_size),
            }
            each.append([_get(http, row, batch, headers) for batch in batches])
        # Each connection's first batch, then each one's second...: as the cycle syncs many
        # connections at once, so that no request waits for its credential's pace.
        asks = [ask for turn in itertools.zip_longest(*each) for ask in turn if ask is not None]
        cpu, kernel, wall = own_cpu_seconds(), own_kernel_seconds(), time.perf_counter()
        await _in_flight(asks, settings.mls.max_concurrent_requests)
        cpu, wall = own_cpu_seconds() - cpu, time.perf_counter() - wall
        kernel = own_kernel_seconds() - kernel
    return {
        "mls_requests": len(asks),
        "cpu_seconds": round(cpu, 3),
        "kernel_seconds": round(kernel, 3),
        "wall_seconds": round(wall, 3),
    }


def _fetch(client: MlsClient, batch: list[str]) -> Ask:
    async def ask() -> None:
        answer = await client.fetch_batch(batch)
        if answer.errors:
            raise RuntimeError(
                f"{len(answer.errors)} key(s) not read: the floor is not the cycle's"
            )

    return ask


def _get(http: EngineClient, row: ConnectionRow, batch: list[str], headers: dict[str, str]) -> Ask:
    async def ask() -> None:
        form = KeyFilter(row.key_filter)
        url = by_key_url(row.base_url, row.resource, batch, form, SELECT)
        answer = await http.get_now(url, headers, {})
        answer.raise_for_status()

    return ask


async def _in_flight(asks: list[Ask], bound: int) -> None:
    """Every ask, `bound` at a time (the daemon's MLS client bounds itself too)."""
    send, receive = anyio.create_memory_object_stream[Ask](len(asks))
    for ask in asks:
        send.send_nowait(ask)
    send.close()

    async def worker(stream: anyio.abc.ObjectReceiveStream[Ask]) -> None:
        async with stream:
            async for ask in stream:
                await ask()

    async with anyio.create_task_group() as tg, receive:
        for _ in range(bound):
            tg.start_soon(worker, receive.clone())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--through", choices=["httpx", "client"], required=True)
    args = parser.parse_args()
    key = os.environ["MLS_SYNC_SECRET_KEY"]
    print(json.dumps(eventloop.run(send_all, args.config, key, args.through)))


if __name__ == "__main__":
    main()
