"""Who holds a run or a lease: `host:pid[:nonce]`, and whether that process still lives.

A holder whose process is gone (a crash, SIGKILL, a closed pipe, a VM lost) cannot finish
what it started: its runs are marked interrupted and its leases taken over, instead of
blocking the next cycle until the lease expires. On this host the kernel says at once; on
another, the process's own short lease running out says it (daemon/sync/process_lease.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Container


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead(holder: str, hostname: str | None = None) -> bool:
    """True only when we can tell for sure: same host, and no such process."""
    pid = holder.partition(":")[2].split(":", 1)[0]
    if not on_this_host(holder, hostname) or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False


def is_gone(holder: str, hostname: str | None, lapsed: Container[str]) -> bool:
    """Whether the holder's process no longer runs, as far as can be told: on this host, as
    the kernel says; on another, when its process lease ran out (`lapsed` holds the
    `host:pid` of those)."""
    if is_dead(holder, hostname):
        return True
    return not on_this_host(holder, hostname) and process_of(holder) in lapsed


def on_this_host(holder: str, hostname: str | None = None) -> bool:
    return holder.partition(":")[0] == (hostname or socket.gethostname())


def process_of(holder: str) -> str:
    """`host:pid` of a holder (`host:pid`, or `host:pid:nonce`)."""
    return ":".join(holder.split(":")[:2])
