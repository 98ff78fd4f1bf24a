"""`mls-sync webhooks` as an operator uses it: a real subprocess on a real database, and the
same commands over --api against the running daemon, which delivers to a receiver on
loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from daemon.sandbox.webhook_sink import receiving
from daemon.store import webhooks as store
from daemon.timestamps import iso, utcnow
from tests.e2e.daemon_process import API_TOKEN, DaemonConfig
from tests.helpers import Platforms
from tests.integration.test_cli import mls_sync

pytestmark = pytest.mark.slow

LOOPBACK_ALLOWED = "[webhooks]\nallow_http_loopback = true\n"


def local(folder: Path, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return mls_sync("webhooks", *args, cwd=folder, env={"MLS_SYNC_SECRET_KEY": key})


def test_an_operator_adds_reads_rotates_and_removes_an_endpoint(
    tmp_path: Path, secret_key: str
) -> None:
    """The secret is printed alone on stdout, once (add and rotate-secret); nothing else
    prints it; a bad URL is refused (exit 2, as any bad input) naming why, without repeating it."""
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n" + LOOPBACK_ALLOWED)
    added = local(tmp_path, secret_key, "add", "http://127.0.0.1:9/hooks", "--type", "listing.*")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert added.stdout == secret + "\n" and secret.startswith("whsec_")
    assert "shown only now" in added.stderr and secret not in added.stderr

    listed = local(tmp_path, secret_key, "list")
    shown = local(tmp_path, secret_key, "show", "1", "--json")
    rotated = local(tmp_path, secret_key, "rotate-secret", "1")
    disabled = local(tmp_path, secret_key, "disable", "1")
    enabled = local(tmp_path, secret_key, "enable", "1", "--json")
    deliveries = local(tmp_path, secret_key, "deliveries", "1")
    everything = [listed, shown, disabled, enabled, deliveries]
    assert all(r.returncode == 0 for r in [*everything, rotated]), [r.stderr for r in everything]
    assert listed.stdout.split()[:7] == [
        "ID",
        "URL",
        "EVENT_TYPES",
        "USER_ID",
        "ENABLED",
        "FAILING_SINCE",
        "CURSOR",
    ]
    assert json.loads(shown.stdout)["secret"] == "<set>"
    new = rotated.stdout.strip()
    assert new.startswith("whsec_") and new != secret
    assert disabled.stdout == "endpoint 1 disabled\n"
    assert json.loads(enabled.stdout)["enabled"] is True
    assert deliveries.stdout == "(none)\n"
    for result in everything:
        assert secret not in result.stdout + result.stderr
        assert new not in result.stdout + result.stderr

    bad = local(tmp_path, secret_key, "add", "https://10.0.0.1/hooks")
    assert bad.returncode == 2 and "private" in bad.stderr and "10.0.0.1" not in bad.stderr
    unknown = local(tmp_path, secret_key, "attempts", "99")
    assert unknown.returncode == 1 and "no webhook delivery has this id" in unknown.stderr

    assert local(tmp_path, secret_key, "remove", "1").returncode == 0
    assert local(tmp_path, secret_key, "list").stdout == "(none)\n"


async def test_over_the_api_the_commands_answer_as_locally_and_a_replay_is_an_attempt(
    tmp_path: Path, secret_key: str, platforms: Platforms
) -> None:
    """Against the running daemon: add, list, deliveries, attempts and replay; the replay
    is sent at once, signed, and recorded as one more attempt of the delivery."""
    config = DaemonConfig.write(tmp_path, platforms[1], secret_key, interval=86_400)
    config.path.write_text(config.path.read_text() + LOOPBACK_ALLOWED)
    api = ["--api", f"http://127.0.0.1:{config.port}"]
    env = {"MLS_SYNC_API_TOKEN": API_TOKEN}
    daemon = config.start()
    try:
        async with receiving() as receiver:
            await daemon.wait_notify("READY=1")

            def remote(*args: str) -> subprocess.CompletedProcess[str]:
                return mls_sync(*api, "webhooks", *args, cwd=tmp_path, env=env)

            added = await anyio.to_thread.run_sync(
                lambda: remote("add", f"{receiver.url}/hooks", "--json")
            )
            assert added.returncode == 0, added.stderr
            made = json.loads(added.stdout)
            receiver.secrets["/hooks"] = [made["secret"]]
            async with config.runtime() as rt:
                async with rt.db.transaction() as conn:
                    await conn.execute(
                        "INSERT INTO events (type, data, created_at) VALUES (?, ?, ?)",
                        ("run.finished", '{"run": {"id": 1}}', iso(utcnow())),
                    )
                await receiver.wait_for("/hooks", 1)
                with anyio.fail_after(10):
                    while not (found := await store.deliveries(rt.db, made["id"], 2**62, 10)) or (
                        found[0].state != "delivered"
                    ):
                        await anyio.sleep(0.05)
            delivery = found[0].id
            replayed = await anyio.to_thread.run_sync(
                lambda: remote("replay", str(delivery), "--json")
            )
            attempts = await anyio.to_thread.run_sync(
                lambda: remote("attempts", str(delivery), "--json")
            )
            listed = await anyio.to_thread.run_sync(lambda: remote("list", "--json"))
    finally:
        daemon.stop()
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["status_code"] == 200
    got = receiver.at("/hooks")
    assert [r.webhook_id for r in got] == [got[0].webhook_id] * 2
    assert receiver.unverified() == []
    seen = json.loads(attempts.stdout)
    assert [(a["status_code"], a["replay"]) for a in seen["items"]] == [(200, False), (200, True)]
    assert seen["state"] == "delivered"
    assert made["secret"] not in listed.stdout
    assert json.loads(listed.stdout)[0]["secret"] == "<set>"
    assert made["secret"] not in daemon.log()


def test_the_commands_are_listed_in_help(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "webhooks", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    for command in (
        "add",
        "list",
        "show",
        "remove",
        "enable",
        "disable",
        "rotate-secret",
        "deliveries",
        "attempts",
        "replay",
    ):
        assert f"  {command} " in result.stdout
