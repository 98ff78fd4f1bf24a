"""Polling clients for the load test, in a process of their own (so their CPU is not the
daemon's), each with its own keep-alive connection, as monitoring agents and load balancers
poll a daemon.

They are lean on purpose: the test machine has two cores for the daemon, the sandbox and
these clients, and 200 requests a second through httpx cost a fifth of a core. Each client is
an asyncio stream with h11 reading the answers (about a tenth of that).

    python -m tests.reliability.loadgen --url http://127.0.0.1:8787 --clients 200 \\
        --period 1.0 --out samples.jsonl

Each client asks /readyz and /status in turn, once per `period` seconds on average (the first
ask of each is spread over one period). Prints "ready" once every client has had an answer;
on SIGTERM or SIGINT it writes one JSON line per request to --out ([unix time sent, latency
in ms, HTTP status or 0 for a failure]) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import h11

from daemon import eventloop

PATHS = ("/readyz", "/status")


async def client(
    url: str, period: float, samples: list[tuple[float, float, int]], started: anyio.Event
) -> None:
    rng = random.Random()
    await anyio.sleep(rng.uniform(0, period))
    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
    reader, writer = await asyncio.open_connection(host, port)
    conn = h11.Connection(h11.CLIENT)
    n = 0
    try:
        while True:
            path = PATHS[n % len(PATHS)]
            sent_at, t0 = time.time(), time.perf_counter()
            try:
                status = await _ask(conn, reader, writer, host, path)
            except (OSError, h11.ProtocolError):
                status = 0
            latency = (time.perf_counter() - t0) * 1000
            samples.append((sent_at, latency, status))
            started.set()
            if status == 0:
                return
            conn.start_next_cycle()
            n += 1
            # Jittered, so the clients never fall into step with each other.
            await anyio.sleep(max(0.0, rng.uniform(0.5, 1.5) * period - latency / 1000))
    finally:
        writer.close()


async def _ask(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    path: str,
) -> int:
    request = h11.Request(method="GET", target=path, headers=[("Host", host)])
    writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
    status = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            if not data:
                raise OSError("the server closed the connection")
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            return status


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--period", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    samples: list[tuple[float, float, int]] = []
    answered = [anyio.Event() for _ in range(args.clients)]
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:
            for event in answered:
                tg.start_soon(client, args.url, args.period, samples, event)
            for event in answered:
                await event.wait()
            print("ready", flush=True)
            async for _ in signals:
                tg.cancel_scope.cancel()
                break
    with args.out.open("w") as out:
        for sample in samples:
            out.write(json.dumps(sample) + "\n")


if __name__ == "__main__":
    eventloop.run(main, sys.argv[1:])
