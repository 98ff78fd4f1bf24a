"""The benchmark's webhook receiver, a process of its own (its CPU is not the daemon's):

    python -m tests.bench.receiver      # prints {"url": ...} on its first line

It verifies every delivery with the `standardwebhooks` library, as an app would, and keeps
each event's lag: its arrival time minus the time its change committed (the event's
`timestamp`). POST /secret sets the secret to verify with; GET /stats answers the figures so
far and starts them afresh.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from datetime import datetime

import anyio
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.serving import serving


class Lags:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.reset()

    def reset(self) -> None:
        self.seconds: list[float] = []
        self.ids: list[int] = []
        self.unverified = 0

    async def deliver(self, request: Request) -> Response:
        body = await request.body()
        arrived = time.time()
        try:
            Webhook(self.secret or "").verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.unverified += 1
            return Response("bad signature", 400)
        event = json.loads(body)
        committed = datetime.fromisoformat(event["timestamp"]).timestamp()
        self.seconds.append(arrived - committed)
        self.ids.append(int(event["id"]))
        return Response("ok")

    async def set_secret(self, request: Request) -> Response:
        self.secret = (await request.body()).decode()
        return Response("ok")

    async def stats(self, request: Request) -> Response:
        ordered = sorted(self.seconds)
        first = list(dict.fromkeys(self.ids))
        figures = {
            "received": len(self.ids),
            "events": len(first),
            "duplicates": len(self.ids) - len(first),
            "out_of_order": sum(1 for a, b in itertools.pairwise(first) if b < a),
            "unverified": self.unverified,
            "lag_p50_seconds": _quantile(ordered, 0.50),
            "lag_p99_seconds": _quantile(ordered, 0.99),
            "lag_max_seconds": round(ordered[-1], 3) if ordered else None,
        }
        self.reset()
        return JSONResponse(figures)


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def main() -> None:
    lags = Lags()
    app = Starlette(
        routes=[
            Route("/hooks", lags.deliver, methods=["POST"]),
            Route("/secret", lags.set_secret, methods=["POST"]),
            Route("/stats", lags.stats, methods=["GET"]),
        ]
    )
    async with serving(app) as url:
        print(json.dumps({"url": url}), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    try:
        anyio.run(main, backend_options={"use_uvloop": True})
    except KeyboardInterrupt:
        sys.exit(0)
