"""systemd notify: the documented datagram protocol, and nothing at all outside systemd."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid

from daemon.service.notify import Notifier


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier({})
    assert notifier.enabled is False
    notifier.ready("x")
    notifier.stopping()


def test_messages_reach_an_abstract_socket_as_one_datagram_each() -> None:
    name = f"mls-sync-unit-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready("serving")
        notifier.reloading()
        notifier.stopping()
        got = [listener.recv(4096).decode() for _ in range(3)]
    assert got[0] == "READY=1\nSTATUS=serving"
    assert got[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert got[2] == "STOPPING=1"


def test_a_path_socket_works_too() -> None:
    # A short private directory: AF_UNIX paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="ms") as folder:
        path = os.path.join(folder, "n.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            Notifier({"NOTIFY_SOCKET": path}).send("WATCHDOG=1")
            assert listener.recv(64) == b"WATCHDOG=1"


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    notifier = Notifier(
        {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    )
    assert notifier.watchdog_usec == 0
