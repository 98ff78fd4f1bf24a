"""Every client the daemon sends with verifies the server's certificate. They share one TLS
context (daemon/tls.py), built once per process, so a client built later verifies as the
first did."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSListener

from daemon.composition import http_client, platform_client
from daemon.mls.transport import transport_cause
from daemon.tls import verifying_context
from tests.certificates import loopback_certificate
from tests.helpers import make_settings

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


@asynccontextmanager
async def untrusted_https(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An HTTPS server on loopback whose certificate no public root signed; its URL, and the
    certificate (which a client may be told to trust)."""
    cert, key = loopback_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(stream: ByteStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(ANSWER)

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)  # noqa: S610 - anyio's typed attributes, no SQL
    async with anyio.create_task_group() as tg:  # a refused handshake is logged, not raised
        tg.start_soon(TLSListener(tcp, context).serve, answer)
        yield f"https://127.0.0.1:{port}/", cert
        tg.cancel_scope.cancel()


async def test_the_server_answers_a_client_that_trusts_its_certificate(tmp_path: Path) -> None:
    """The control: the refusals below are of the certificate, not of a broken server."""
    async with untrusted_https(tmp_path) as (url, cert):
        trusting = ssl.create_default_context(cafile=cert)
        async with httpx.AsyncClient(verify=trusting) as client:
            assert (await client.get(url)).status_code == 200


@pytest.mark.parametrize("engine", ["aiohttp", "httpcore"])
async def test_an_mls_server_with_an_untrusted_certificate_is_refused(
    tmp_path: Path, engine: str
) -> None:
    settings = make_settings(tmp_path, MLS_SYNC_MLS__HTTP_ENGINE=engine)
    async with untrusted_https(tmp_path) as (url, _):
        for _ in range(2):  # a second client, on the context the first one built
            async with http_client(settings) as client:
                with pytest.raises(httpx.ConnectError) as refused:
                    await client.get(url)
            assert transport_cause(refused.value).startswith("TLS error")


async def test_a_platform_with_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with untrusted_https(tmp_path) as (url, _):
        for _ in range(2):
            async with platform_client(settings) as client:
                with pytest.raises(httpx.ConnectError) as refused:
                    await client.delete(url)
            assert transport_cause(refused.value).startswith("TLS error")


async def test_a_certificate_named_in_ssl_cert_file_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clients ignore the environment, as before they shared a context: a CA bundle an
    environment variable names does not make a server trusted."""
    settings = make_settings(tmp_path)
    async with untrusted_https(tmp_path) as (url, cert):
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        verifying_context.cache_clear()  # built again, with that variable set
        try:
            async with platform_client(settings) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.delete(url)
        finally:
            verifying_context.cache_clear()  # not left built with the variable set
