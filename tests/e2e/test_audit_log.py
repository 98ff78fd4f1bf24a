"""Every write through the API or the CLI leaves one audit line: what, which record, who
asked; never a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from daemon.encryption import generate_key
from tests.e2e.daemon_process import DaemonConfig
from tests.helpers import Platforms

SECRET = "sk-live-must-never-be-logged-7f3a"


def audit_lines(log: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "audit"]


async def test_an_api_write_is_audited_with_its_token_and_without_its_secret(
    tmp_path: Path, secret_key: str, platforms: Platforms
) -> None:
    daemon = DaemonConfig.write(tmp_path, platforms[1], secret_key, interval=86_400).start()
    try:
        await daemon.wait_notify("READY=1")
        body = {"name": "M", "base_url": "http://127.0.0.1:9/odata", "secret": SECRET}
        created = await daemon.call("PUT", "/v1/mls-connections/m", json=body)
        assert created.status_code == 201, created.text
        refused = await daemon.call("DELETE", "/v1/listings/nope")
        assert refused.status_code == 404
        read = await daemon.call("GET", "/v1/mls-connections/m")
        assert read.status_code == 200

        log = daemon.log()
    finally:
        daemon.stop()
    audited = audit_lines(log)
    assert len(audited) == 1, audited  # the write; not the refusal, not the read
    line = audited[0]
    assert (line["action"], line["record"], line["id"]) == ("created", "mls_connection", "m")
    assert line["actor"] == "token:(configured)" and line["new_auth"] is True
    assert SECRET not in log


def test_a_cli_write_prints_its_audit_line_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    env = {
        **os.environ,
        "MLS_SYNC_SECRET_KEY": generate_key(),
        "T": SECRET,
        "MLS_SYNC_LOGGING__FORMAT": "json",
    }
    command = ["connections", "add", "--id", "m", "--name", "M", "--base-url", "http://127.0.0.1:9"]
    added = subprocess.run(  # noqa: S603 - the CLI under test
        [sys.executable, "-m", "daemon", *command, "--secret-env", "T"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout == "connection m added\n"  # stdout stays what a script reads
    audited = audit_lines(added.stderr)
    assert [(a["action"], a["id"]) for a in audited] == [("created", "m")]
    assert str(audited[0]["actor"]).startswith("cli:")
    assert SECRET not in added.stderr
