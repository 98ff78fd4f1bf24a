"""The CLI against the running daemon (`--api`) answers as it does on the local database."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests import cli_forkserver
from tests.e2e.daemon_process import API_TOKEN, DaemonConfig
from tests.helpers import Mls, Platforms, add_sandbox_connection


def mls_sync(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli_forkserver.run(list(args), cwd=cwd, env={**os.environ, **env})


async def test_a_sync_refused_exits_1_over_the_api_as_it_does_locally(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms
) -> None:
    config = DaemonConfig.write(tmp_path, platforms[1], secret_key, interval=86_400)
    async with config.runtime() as rt:
        await add_sandbox_connection(rt, mls, ["K1"])
    local_env = {"MLS_SYNC_SECRET_KEY": secret_key}
    paused = mls_sync(tmp_path, "--api", "x", "connections", "pause", "mls-1")
    assert paused.returncode == 2  # no token for --api: refused before anything
    assert mls_sync(tmp_path, "connections", "pause", "mls-1", **local_env).returncode == 0
    local = mls_sync(tmp_path, "sync", "--connection", "mls-1", **local_env)
    daemon = config.start()
    try:
        await daemon.wait_notify("READY=1")
        remote = mls_sync(
            tmp_path,
            "--api",
            daemon.url,
            "sync",
            "--connection",
            "mls-1",
            MLS_SYNC_API_TOKEN=API_TOKEN,
        )
        local_only = mls_sync(
            tmp_path, "--api", daemon.url, "check-config", MLS_SYNC_API_TOKEN=API_TOKEN
        )
    finally:
        daemon.stop()

    assert local.returncode == 1 and "paused" in local.stderr, local.stderr
    assert (remote.returncode, remote.stderr) == (local.returncode, local.stderr)
    assert local_only.returncode == 2 and "not over --api" in local_only.stderr
