"""Serving an ASGI app inside the caller's event loop (Hypercorn): the daemon's HTTP API and
the sandbox servers alike.

Hypercorn installs no signal handlers when given a shutdown trigger (runtime.md), so it can
live inside the daemon or a test without stealing SIGTERM. Port 0 picks a free one: we bind the
socket ourselves to learn it (and to fail early and clearly if the address is taken), and hand
the descriptor to Hypercorn.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from hypercorn.asyncio import serve
from hypercorn.config import Config

LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def serving(app: Any, host: str = LOOPBACK, port: int = 0) -> AsyncIterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) while the app is served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("mls_sync.sandbox.http")
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 30.0
    stop = asyncio.Event()
    # A plain asyncio task, not a task group: a pytest-asyncio fixture enters and leaves this
    # context in different tasks, which a cancel scope would refuse.
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    sock.detach()  # Hypercorn owns the descriptor from here and closes it
    try:
        await _wait_until_listening(host, bound_port, server)
        yield f"http://{shown}:{bound_port}"
    finally:
        stop.set()
        await server


async def _wait_until_listening(host: str, port: int, server: asyncio.Task[None]) -> None:
    with anyio.fail_after(10):
        while not server.done():
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                await anyio.sleep(0.01)
                continue
            await stream.aclose()
            return
        server.result()  # the server died at start: raise its error here
