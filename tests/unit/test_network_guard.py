"""The suite itself may never leave 127.0.0.1: pytest-socket is set up with --allow-hosts."""

from __future__ import annotations

import socket

import pytest
from pytest_socket import SocketConnectBlockedError


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_a_connection_off_the_machine_is_blocked_before_any_packet_is_sent() -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): documentation only. The guard raises before connect().
    assert socket.socket.connect.__name__ == "guarded_connect"
    with socket.socket() as sock, pytest.raises(SocketConnectBlockedError):
        sock.connect(("192.0.2.1", 80))


def test_loopback_stays_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
