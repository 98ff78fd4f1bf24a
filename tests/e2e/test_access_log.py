"""The HTTP access log of the daemon as a subprocess: one `http_request` line per /v1 request
at info, naming the method, the route (its template, never the path with its ids), the status
and the duration; never a query string, a body or a token. Health and metrics routes, polled
many times a second, only at debug. `[daemon] access_log = false` turns it off."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from daemon.encryption import generate_key
from tests.e2e.daemon_process import API_TOKEN, DATABASE, NOWHERE, Daemon, DaemonConfig

MARKER = "mk-5ecret-77a1"  # stands for a secret sent in a query string or a body
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
# What a caller does, and the line each /v1 request should log: method, route, status.
REQUESTS: list[tuple[str, str, dict[str, Any], tuple[str, str | None, int]]] = [
    (
        "PUT",
        "/v1/mls-connections/c1",
        {"json": {"name": "C", "base_url": NOWHERE, "secret": MARKER}},
        ("PUT", "/v1/mls-connections/{connection_id}", 201),
    ),
    ("GET", f"/v1/listings?q={MARKER}", {}, ("GET", "/v1/listings", 200)),
    ("GET", f"/v1/listings/{MARKER}", {}, ("GET", "/v1/listings/{listing_id}", 404)),
    (
        "PUT",
        "/v1/listings/L-1",
        {"json": {"connection_id": "c1", "listing_key": MARKER}},
        ("PUT", "/v1/listings/{listing_id}", 201),
    ),
    ("GET", f"/v1/runs/1/errors?after={MARKER}", {}, ("GET", "/v1/runs/{run_id}/errors", 422)),
    ("GET", f"/v1/{MARKER}", {}, ("GET", None, 404)),
    ("DELETE", "/v1/runs", {}, ("DELETE", "/v1/runs", 405)),
]


def _start(folder: Path, **daemon_settings: bool) -> Daemon:
    config = DaemonConfig.write(folder, NOWHERE, generate_key(), interval=86_400)
    if daemon_settings:
        config.add("daemon", **daemon_settings)
    daemon = config.start()
    anyio.run(daemon.wait_notify, "READY=1")
    return daemon


def _ask(daemon: Daemon) -> None:
    with httpx.Client(base_url=daemon.url, headers=AUTH, timeout=10) as client:
        for method, path, extra, _ in REQUESTS:
            client.request(method, path, **extra)
        for path in ("/livez", "/readyz", "/status", "/metrics"):
            assert client.get(path).status_code == 200, path
        client.get("/v1/runs", headers={"Authorization": f"Bearer {MARKER}"})  # 401


def _lines(daemon: Daemon, count: int) -> list[dict[str, Any]]:
    """The daemon's http_request lines, once there are `count` (each is written as its
    answer goes out, so it may follow the answer by a moment)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
        requests = [line for line in lines if line["event"] == "http_request"]
        if len(requests) >= count or time.monotonic() > deadline:
            return requests
        time.sleep(0.05)


def test_each_v1_request_logs_one_line_with_its_route_and_status_never_a_secret(
    tmp_path: Path,
) -> None:
    daemon = _start(tmp_path)
    try:
        _ask(daemon)
        lines = _lines(daemon, len(REQUESTS) + 1)
        time.sleep(0.3)  # no line beyond those
        assert _lines(daemon, 0) == lines
    finally:
        daemon.stop()
    logged = [(line["method"], line["route"], line["status"]) for line in lines]
    assert logged == [line for *_, line in REQUESTS] + [("GET", "/v1/runs", 401)]
    for line in lines:
        assert line["level"] == "info"
        assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 5000
        assert set(line) == {
            "event",
            "method",
            "route",
            "status",
            "duration_ms",
            "level",
            "timestamp",
        }
    assert MARKER not in "".join(json.dumps(line) for line in lines)
    assert MARKER not in daemon.log()


def test_health_and_metrics_routes_are_logged_only_at_debug(tmp_path: Path) -> None:
    config = DaemonConfig.write(tmp_path, NOWHERE, generate_key(), interval=86_400)
    config.path.write_text(config.path.read_text() + '\n[logging]\nlevel = "debug"\n')
    daemon = config.start()
    try:
        anyio.run(daemon.wait_notify, "READY=1")
        _ask(daemon)
        lines = _lines(daemon, len(REQUESTS) + 5)
    finally:
        daemon.stop()
    polled = {line["route"]: line["level"] for line in lines if line["level"] == "debug"}
    assert polled == {path: "debug" for path in ("/livez", "/readyz", "/status", "/metrics")}


def test_access_log_false_turns_it_off(tmp_path: Path) -> None:
    daemon = _start(tmp_path, access_log=False)
    try:
        _ask(daemon)
        time.sleep(0.3)
        assert _lines(daemon, 0) == []
        assert "audit" in daemon.log()  # the daemon logs the rest as before
    finally:
        daemon.stop()


def test_a_request_that_fails_unforeseen_is_logged_as_its_500(tmp_path: Path) -> None:
    """The answer a failure gets is made outside the access log: its line still says 500,
    not that the client left."""
    daemon = _start(tmp_path)
    try:
        with sqlite3.connect(tmp_path / DATABASE) as db:
            db.execute("ALTER TABLE social_posts RENAME TO social_posts_gone")
        with httpx.Client(base_url=daemon.url, headers=AUTH, timeout=10) as client:
            assert client.get("/v1/posts").status_code == 500
        lines = _lines(daemon, 1)
    finally:
        daemon.stop()
    assert [(line["route"], line["status"]) for line in lines] == [("/v1/posts", 500)]
