"""Scenario J's floor: the by_key cycle's requests alone, with nothing of the daemon around them.

    python -m tests.bench.bare_requests --mls URL --feeds N --per-feed M --in-flight K [--read]

The same 2,000 queries as scenario A's by_key cycle (each connection's keys in batches of 50,
each URL built by `daemon/mls/query.py`), sent through the daemon's own MLS client (httpx on
the shipped engine, `composition.http_client`) with its headers and as many in flight as its
request bound; with --read, each answer is also read as the daemon reads it
(`daemon/mls/payload.py` `parse_page`). Nothing is planned or written. What the cycle costs
beyond this is the daemon's own work, not the HTTP client's (docs/benchmarks.md "The HTTP
engine"). Prints this process's CPU during the requests as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

import anyio

from daemon import composition, eventloop
from daemon.config import Settings
from daemon.enums import KeyFilter
from daemon.mls.payload import parse_page
from daemon.mls.query import SELECT, by_key_url, page_size_preference
from daemon.sandbox.standalone import feed_key, feed_token

BATCH = 50  # scenario A's batch_size


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def send_all(
    mls_url: str, feeds: int, per_feed: int, in_flight: int, read: bool
) -> dict[str, Any]:
    settings = Settings.model_validate({"mls": {"max_concurrent_requests": in_flight}})
    queries = [
        (n, [feed_key(n, i) for i in range(start, min(start + BATCH, per_feed))])
        for n in range(feeds)
        for start in range(0, per_feed, BATCH)
    ]
    prefer = page_size_preference(BATCH)
    records = 0
    async with composition.http_client(settings) as client:

        async def ask(feed: int, keys: list[str]) -> None:
            nonlocal records
            url = by_key_url(f"{mls_url}/feed/{feed}", "Property", keys, KeyFilter.IN, SELECT)
            headers = {
                "Authorization": f"Bearer {feed_token(feed)}",
                "Accept": "application/json",
                "Prefer": prefer,
            }
            answer = await client.get(url, headers=headers)
            answer.raise_for_status()
            if read:
                records += len(parse_page(answer.content).records)

        await ask(*queries[0])  # the pool's first connection, as a cycle's would be open
        records = 0
        send, receive = anyio.create_memory_object_stream[tuple[int, list[str]]](len(queries))
        for query in queries:
            send.send_nowait(query)
        send.close()

        async def worker(stream: anyio.abc.ObjectReceiveStream[tuple[int, list[str]]]) -> None:
            async with stream:
                async for feed, keys in stream:
                    await ask(feed, keys)

        cpu, wall = _cpu(), time.perf_counter()
        async with anyio.create_task_group() as tg, receive:
            for _ in range(in_flight):
                tg.start_soon(worker, receive.clone())
        cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    return {
        "mls_requests": len(queries),
        "records_read": records,
        "cpu_seconds": round(cpu, 3),
        "wall_seconds": round(wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mls", required=True, help="the sandbox MLS's URL")
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--per-feed", type=int, required=True)
    parser.add_argument("--in-flight", type=int, required=True)
    parser.add_argument("--read", action="store_true", help="read each answer's records too")
    args = parser.parse_args()
    figures = eventloop.run(
        send_all, args.mls, args.feeds, args.per_feed, args.in_flight, args.read
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
