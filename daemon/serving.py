"""Serving an ASGI app inside the caller's event loop (Uvicorn, with the httptools parser):
the daemon's HTTP API and the sandbox servers alike.

Uvicorn always captures SIGINT/SIGTERM in `Server.serve()` (docs/runtime.md), so the server here
is a subclass that captures nothing: the daemon receives its signals in one place. Port 0
picks a free one: we bind the socket ourselves to learn it (and to fail early and clearly if
the address is taken), and hand it to Uvicorn.

Why Uvicorn and not Hypercorn (which served until the load test): measured with wrk on the
daemon, Hypercorn answered /livez at about 2,700 requests/s of one core; 200 polling clients
then took a tenth of the CPU a cycle needs (docs/reliability.md has the figures).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import uvicorn

LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def serving(app: Any, host: str = LOOPBACK, port: int = 0) -> AsyncIterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) while the app is served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: the accepted connections inherit it, and the asyncio
    # loop sets TCP_NODELAY only on sockets that name it. Without it, an answer written in
    # two parts (head, then body) waited for the client's delayed ACK: 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="none",  # the caller's loop (uvloop in the daemon)
        lifespan="off",
        log_config=None,  # leave the daemon's logging alone
        access_log=False,
        proxy_headers=False,  # loopback or our own bind: no proxy to trust
        server_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
        backlog=512,
    )
    server = _Server(config)
    # A plain asyncio task, not a task group: a pytest-asyncio fixture enters and leaves this
    # context in different tasks, which a cancel scope would refuse.
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _wait_until_listening(host, bound_port, task)
        yield f"http://{shown}:{bound_port}"
    finally:
        server.should_exit = True
        try:
            # Shielded: a caller cancelled (a task group ending) still has the server
            # finish its graceful second and the socket closed.
            with anyio.CancelScope(shield=True):
                await task
        finally:
            sock.close()


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon's own signal receiver handles SIGTERM and SIGINT


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
