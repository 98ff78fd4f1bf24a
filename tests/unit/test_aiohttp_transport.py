"""The MLS engine's errors read as httpcore's do (docs/benchmarks.md "The HTTP engine"): an
operator sees the same cause whichever engine sent the request."""

from __future__ import annotations

import errno
import ssl

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from daemon.aiohttp_transport import as_httpx_error
from daemon.mls.transport import transport_cause

REQUEST = httpx.Request("GET", "https://mls.example/Property?$filter=ListingKey%20eq%20%27A%27")
KEY = ConnectionKey("mls.example", 443, True, True, None, None, None)


def _connect_failure(cause: OSError) -> aiohttp.ClientConnectorError:
    try:
        raise aiohttp.ClientConnectorError(KEY, cause) from cause
    except aiohttp.ClientConnectorError as exc:
        return exc


def _as_raised(exc: aiohttp.ClientError) -> httpx.TransportError:
    try:
        raise as_httpx_error(exc, REQUEST) from exc
    except httpx.TransportError as mapped:
        return mapped


@pytest.mark.parametrize(
    ("cause", "named"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "ConnectError"),
        (ssl.SSLError(1, "handshake failure"), "TLS error"),
    ],
)
def test_a_failed_connection_is_named_by_its_cause_not_by_aiohttps_message(
    cause: OSError, named: str
) -> None:
    mapped = _as_raised(_connect_failure(cause))
    assert isinstance(mapped, httpx.ConnectError)
    assert transport_cause(mapped).startswith(named)


def test_timeouts_are_httpx_timeouts_and_no_message_carries_the_url() -> None:
    connect = _as_raised(aiohttp.ConnectionTimeoutError("Connection timeout to host x"))
    read = _as_raised(aiohttp.SocketTimeoutError("Timeout on reading data from socket"))
    assert isinstance(connect, httpx.ConnectTimeout) and isinstance(read, httpx.ReadTimeout)
    assert transport_cause(connect) == transport_cause(read) == "timed out"
    unreachable = _as_raised(_connect_failure(OSError(errno.ENETUNREACH, "Network unreachable")))
    for mapped in (unreachable, connect, read):
        assert "mls.example" not in str(mapped) and "Property" not in str(mapped)
