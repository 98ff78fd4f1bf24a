"""The servers of daemon/serving.py (the daemon's API, the sandbox's servers) on the plain
asyncio loop, where uvloop is not installed: the test suite's loop."""

from __future__ import annotations

import statistics
import time

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from daemon.serving import serving

# Linux's shortest delayed ACK: an answer held back by Nagle's algorithm waits this long.
DELAYED_ACK_SECONDS = 0.040


async def test_an_answer_is_not_held_back_until_the_clients_delayed_ack() -> None:
    """An answer goes out in two writes (its head, then its body). Without TCP_NODELAY on
    the connection, the second waits for the client's ACK of the first, which the client
    delays: every request on a kept-alive connection took 40 ms more."""
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        took = []
        for _ in range(11):
            started = time.perf_counter()
            assert (await client.get("/")).text == "ok"
            took.append(time.perf_counter() - started)
    assert statistics.median(took) < DELAYED_ACK_SECONDS / 2
