"""Clients shared by several credentials never carry one credential's cookies to another."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from daemon.composition import http_client, platform_client
from daemon.config import Settings
from tests.helpers import make_settings


class _SetsSession(BaseHTTPRequestHandler):
    """Answers with a session cookie and remembers the Cookie header each request brought."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        _SetsSession.seen.append(self.headers.get("Cookie"))
        self.send_response(200)
        self.send_header("Set-Cookie", f"session=for-{self.headers.get('Authorization')}; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SetsSession)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _SetsSession.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("make", "engine"),
    [(http_client, "aiohttp"), (http_client, "httpcore"), (platform_client, "aiohttp")],
)
async def test_a_cookie_set_for_one_credential_never_reaches_the_next(
    server_url: str, make: Callable[[Settings], httpx.AsyncClient], engine: str, tmp_path: Path
) -> None:
    """(The platforms' client is httpx's own whatever the MLS engine.)"""
    async with make(make_settings(tmp_path, MLS_SYNC_MLS__HTTP_ENGINE=engine)) as client:
        first = await client.get(f"{server_url}/feed", headers={"Authorization": "Bearer A"})
        await client.get(f"{server_url}/feed", headers={"Authorization": "Bearer B"})

    assert "session=for-Bearer A" in first.headers["set-cookie"]  # the server did set one
    assert _SetsSession.seen == [None, None]
    assert not client.cookies
