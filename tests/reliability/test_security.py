"""Security (invariant 6): every /v1 route wants the token; no secret leaves; files are
owner-only; the server listens on loopback unless told otherwise."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import httpx

from daemon.config import load_settings
from tests.e2e.daemon_process import API_TOKEN, DaemonConfig
from tests.helpers import Mls, add_connection, track
from tests.paths import REPO

SECRETS = {
    "mls": "mls-bearer-5ecret-aa11",
    "fb": "EAAB-fb-5ecret-bb22",
    "li_refresh": "AQX-refresh-5ecret-cc33",
    "li_client": "li-client-5ecret-dd44",
    "oauth": "oauth-client-5ecret-ee55",
}


async def test_no_route_without_the_token_and_no_secret_in_any_answer_log_or_file(
    mls: Mls, daemon_config: DaemonConfig
) -> None:
    sandbox, mls_url = mls
    sandbox.static_tokens.add(SECRETS["mls"])
    sandbox.put("K1", "Closed")
    async with daemon_config.runtime() as rt:
        await add_connection(rt, mls_url, secret=SECRETS["mls"])
        await track(rt, "mls-1", ["K1"])
    daemon = daemon_config.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)
        seeded = [
            (
                "PUT",
                "/v1/platform-accounts/fb",
                {"user_id": "default", "platform": "facebook", "access_token": SECRETS["fb"]},
            ),
            (
                "PUT",
                "/v1/platform-accounts/li",
                {
                    "user_id": "default",
                    "platform": "linkedin",
                    "access_token": SECRETS["fb"],
                    "refresh_token": SECRETS["li_refresh"],
                    "client_id": "app",
                    "client_secret": SECRETS["li_client"],
                },
            ),
            (
                "PUT",
                "/v1/mls-connections/oauth",
                {
                    "name": "O",
                    "base_url": mls_url,
                    "auth_kind": "oauth2",
                    "client_id": "c",
                    "token_url": f"{mls_url}/oauth/token",
                    "secret": SECRETS["oauth"],
                },
            ),
            (
                "PUT",
                "/v1/posts/p1",
                {"listing_id": "L-K1", "account_id": "fb", "platform_post_id": "1_2"},
            ),
        ]
        answers = []
        for method, path, body in seeded:
            response = await daemon.call(method, path, json=body)
            assert response.status_code in (200, 201), response.text
            answers.append(response.text)
        await daemon.call("POST", "/v1/sync")
        await daemon.wait_for_run(2)

        spec = (await daemon.get("/openapi.json")).json()
        routes = [
            (m.upper(), p) for p, ops in spec["paths"].items() if p.startswith("/v1") for m in ops
        ]
        assert len(routes) >= 18
        # No keep-alive: after a 401 sent before the body was read, the server closes the
        # connection, and a pooled client would reuse it (noted in docs/reliability.md).
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=daemon.url, timeout=10, limits=no_reuse) as client:
            for method, path in routes:
                concrete = re.sub(r"\{[^}]+\}", "x", path)
                for header in (
                    {},
                    {"Authorization": "Bearer wrong"},
                    {"Authorization": API_TOKEN},
                    {"Authorization": "Bearer"},
                    {"Authorization": f"Basic {API_TOKEN}"},
                ):
                    refused = await client.request(method, concrete, headers=header, json={})
                    assert refused.status_code == 401, (method, concrete, header)
            for path in (
                "/status",
                "/metrics",
                "/readyz",
                "/openapi.json",
                "/v1/runs",
                "/v1/runs/1",
                "/v1/runs/2",
                "/v1/manual-actions",
                "/v1/mls-connections/mls-1",
                "/v1/mls-connections/oauth",
                "/v1/platform-accounts/fb",
                "/v1/platform-accounts/li",
                "/v1/posts/p1",
                "/v1/listings/L-K1",
            ):
                headers = {"Authorization": f"Bearer {API_TOKEN}"} if path.startswith("/v1") else {}
                response = await client.get(path, headers=headers)
                assert response.status_code == 200, (path, response.text)
                answers.append(response.text)
    finally:
        daemon.stop()

    state = daemon_config.database.parent
    texts = "\n".join(answers) + daemon.log()
    files = _files_in(state)
    assert daemon_config.database.name in files
    for name, secret in SECRETS.items():
        assert secret not in texts, name
        for file_name, (content, _) in files.items():
            assert secret.encode() not in content, (name, file_name)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for file_name, (_, mode) in files.items():
        assert stat.S_IMODE(mode) & 0o077 == 0, file_name  # owner-only


def _files_in(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Each file's bytes and mode. The daemon's child, which holds the database open too,
    may close it just after the daemon ended, and SQLite then removes the WAL's `-shm` and
    `-wal` files: one gone between the listing and its read held nothing any longer."""
    found = {}
    for written in folder.iterdir():
        try:
            found[written.name] = (written.read_bytes(), written.stat().st_mode)
        except FileNotFoundError:
            continue
    return found


def test_the_http_server_binds_loopback_by_default(tmp_path: Path) -> None:
    empty = tmp_path / "config.toml"
    empty.write_text("")
    assert load_settings(empty, {}).daemon.http_host == "127.0.0.1"
    shipped = REPO / "config.toml"
    assert load_settings(shipped, {}).daemon.http_host == "127.0.0.1"
