"""The sandbox as a process of its own: many MLS feeds and the social platforms on loopback.

    python -m daemon.sandbox.standalone --feeds 1000 --listings-per-feed 100 --port 0

Prints one JSON line with its URLs, then serves until killed. Feed n answers at
{mls}/feed/n/Property with the static token `feed-n-token` (or `shared-token` on every feed,
for one credential shared by many connections). POST {mls}/admin/move {"count": N} moves N
listings chosen at random across all feeds. The benchmark runs it apart from the daemon, so
the daemon's own CPU and memory can be measured alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from daemon import eventloop
from daemon.sandbox.mls_server import SandboxMls, build_mls_app
from daemon.sandbox.platforms_server import SandboxPlatforms, build_platforms_app
from daemon.serving import serving

SHARED_TOKEN = "shared-token"


def feed_key(feed: int, n: int) -> str:
    return f"F{feed:04d}-{n:06d}"


def feed_token(feed: int) -> str:
    return f"feed-{feed}-token"


class Feeds:
    """Routes /feed/{n}/... to feed n's own app; /admin/move moves the market."""

    def __init__(self, count: int, per_feed: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.feeds = []
        self.apps = []
        for n in range(count):
            mls = SandboxMls(static_tokens={feed_token(n), SHARED_TOKEN}, max_page_size=1000)
            for i in range(per_feed):
                mls.put(feed_key(n, i), "Active")
            self.feeds.append(mls)
            self.apps.append(build_mls_app(mls, prefix=f"/feed/{n}"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop, but say so
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope.get("path", "")
        if scope["type"] == "http" and path == "/admin/move":
            request = Request(scope, receive)
            body: dict[str, Any] = await request.json()
            moved = self.move(int(body.get("count", 0)), body.get("to", "Closed"))
            await JSONResponse({"moved": moved})(scope, receive, send)
            return
        if scope["type"] == "http" and path == "/admin/requests":
            total = sum(sum(f.requests.values()) for f in self.feeds)
            await JSONResponse({"requests": total})(scope, receive, send)
            return
        parts = path.split("/", 3)
        if (
            scope["type"] == "http"
            and len(parts) >= 3
            and parts[1] == "feed"
            and parts[2].isdigit()
        ):
            n = int(parts[2])
            if n < len(self.apps):
                await self.apps[n](scope, receive, send)
                return
        await Response("not found", status_code=404)(scope, receive, send)

    def move(self, count: int, to: str) -> list[str]:
        """Sets `count` random listings not already at `to` to it (each one a change the
        daemon will see); returns their keys."""
        everything = [(f, k) for f in self.feeds for k in f.records if f.status_of(k) != to]
        chosen = self.rng.sample(everything, min(count, len(everything)))
        for feed, key in chosen:
            feed.set_status(key, to)
        return [key for _, key in chosen]


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=10)
    parser.add_argument("--listings-per-feed", type=int, default=100)
    parser.add_argument("--port", type=int, default=0, help="MLS port (0: any free one)")
    parser.add_argument("--platforms-port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    feeds = Feeds(args.feeds, args.listings_per_feed, args.seed)
    platforms = SandboxPlatforms()
    async with (
        serving(feeds, port=args.port) as mls_url,
        serving(build_platforms_app(platforms), port=args.platforms_port) as platforms_url,
    ):
        print(json.dumps({"mls": mls_url, "platforms": platforms_url}), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        eventloop.run(main, sys.argv[1:])
