"""Ports for the servers the tests start (daemons, PostgreSQL), below the kernel's ephemeral
range (32768 and up on Linux, where every client socket takes its port): a port picked there
and freed may be taken by a client before the server binds it, or, for a server stopped and
started again on its port, while it is down. A block of its own for each pytest-xdist worker,
and for each kind of server."""

from __future__ import annotations

import itertools
import os
import socket

PORTS_PER_WORKER = 1000
DAEMONS = 20_000  # the first port of the daemons' blocks (one per worker, up to 29,999)
POSTGRESQL = 10_000  # the first port of PostgreSQL's blocks (up to 19,999)
_next_port = itertools.count()


def free_port(first: int = DAEMONS) -> int:
    """A port nothing listens on now, in this worker's block of the ports from `first`."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = first + PORTS_PER_WORKER * (int(worker) if worker.isdigit() else 0)
    for _ in range(PORTS_PER_WORKER):
        port = base + next(_next_port) % PORTS_PER_WORKER
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: the next one
            return port
    raise RuntimeError(f"no free port in {base}-{base + PORTS_PER_WORKER - 1}")
