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
from starlette.types import Receive, Scope, Send

from daemon.serving import serving


class Lags:
    def __init__(self) -> None:
        self.verifier: Webhook | None = None  # POST /secret sets it
        self.reset()

    def reset(self) -> None:
        self.seconds: list[float] = []
        self.ids: list[int] = []
        self.unverified = 0

    async def deliver(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A bare ASGI app rather than a framework's: the receiver's CPU is on this machine's
        two cores beside the cycle it measures, where an app's would be on its own server."""
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        arrived = time.time()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if self.verifier is None:
                raise WebhookVerificationError("no secret set")
            self.verifier.verify(body, headers)
        except WebhookVerificationError:
            self.unverified += 1
            await _answer(send, 400, b"bad signature")
            return
        event = json.loads(body)
        committed = datetime.fromisoformat(event["timestamp"]).timestamp()
        self.seconds.append(arrived - committed)
        self.ids.append(int(event["id"]))
        await _answer(send, 200, b"ok")

    async def set_secret(self, request: Request) -> Response:
        self.verifier = Webhook((await request.body()).decode())
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


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def main() -> None:
    lags = Lags()
    admin = Starlette(
        routes=[
            Route("/secret", lags.set_secret, methods=["POST"]),
            Route("/stats", lags.stats, methods=["GET"]),
        ]
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/hooks":
            await lags.deliver(scope, receive, send)
        else:
            await admin(scope, receive, send)

    async with serving(app) as url:
        print(json.dumps({"url": url}), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    try:
        anyio.run(main, backend_options={"use_uvloop": True})
    except KeyboardInterrupt:
        sys.exit(0)
