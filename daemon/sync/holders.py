"""Who holds a run or a lease: `host:pid[:nonce]`, and whether that process still lives.

A holder on this host whose process is gone (a crash, SIGKILL, a closed pipe) cannot finish
what it started: its runs are marked interrupted and its leases taken over at once, instead of
blocking the next cycle until the lease expires.
"""

from __future__ import annotations

import os
import socket


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead(holder: str, hostname: str | None = None) -> bool:
    """True only when we can tell for sure: same host, and no such process."""
    host, _, rest = holder.partition(":")
    pid = rest.split(":", 1)[0]
    if host != (hostname or socket.gethostname()) or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False
