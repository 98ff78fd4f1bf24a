"""systemd's notify protocol, without a dependency: one datagram to $NOTIFY_SOCKET.

Written against the documented protocol (sd_notify(3), systemd's own
notify-selfcontained-example.py): a leading "@" names an abstract socket. With no
$NOTIFY_SOCKET (not under systemd, or not Type=notify), every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import anyio
import structlog

log = structlog.get_logger("mls_sync.systemd")

# How long a notification that must arrive (READY, RELOADING, STOPPING) may wait for room in
# systemd's queue. The send runs on the event loop: a stuck systemd must not stop it.
SEND_TIMEOUT_SECONDS = 2.0


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_usec = int(environ.get("WATCHDOG_USEC", "0") or 0)
        watchdog_pid = environ.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid.isdigit() and int(watchdog_pid) != os.getpid():
            self.watchdog_usec = 0  # the watchdog is meant for another process

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str, droppable: bool = False) -> None:
        """One datagram. `droppable` (a status line, a watchdog ping): sent only if systemd's
        queue has room now, since the next one follows soon; else it waits for room a little
        (SEND_TIMEOUT_SECONDS)."""
        if self.address is None:
            return
        message = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                if droppable:
                    sock.setblocking(False)
                else:
                    sock.settimeout(SEND_TIMEOUT_SECONDS)
                sock.connect(self.address)
                sock.sendall(message)
        except BlockingIOError:  # systemd has not read the ones before: a later one goes
            log.debug("notify_dropped", message=fields[0].partition("=")[0])
        except OSError as exc:
            log.warning("notify_failed", error=str(exc))

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        # systemd wants the CLOCK_MONOTONIC time of the reload to tell reloads apart.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}", droppable=True)

    async def watchdog_loop(self) -> None:
        """WATCHDOG=1 at half the interval, from the event loop itself: a stuck loop stops
        the pings, and systemd restarts the service."""
        if self.address is None or self.watchdog_usec <= 0:
            return
        period = self.watchdog_usec / 2_000_000
        while True:
            self.send("WATCHDOG=1", droppable=True)
            await anyio.sleep(period)


def _address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # an abstract socket
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used by systemd 252 for services
