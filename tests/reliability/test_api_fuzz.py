"""Schemathesis against the daemon's own /openapi.json: every generated request gets an answer
the document describes (a status code it lists for the operation, its media type, a body of its
schema), and none a 5xx.

The three operations that make the daemon call an MLS (`/v1/sync`, `/v1/listings/{id}/sync`,
`/v1/mls-connections/{id}/sync`) are left out: a generated connection may point anywhere, and
nothing may leave 127.0.0.1. The webhook operations are left out too: an endpoint is called
(and its host name resolved) once events reach it, and a replay calls it at once. Creating
other records makes no outbound call. The examples in the document come first, so records
exist and their answers are checked too. Short by default; more cases:
    MLS_SYNC_FUZZ_EXAMPLES=200 .venv/bin/pytest tests/reliability/test_api_fuzz.py -s
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.e2e.daemon_process import API_TOKEN, DaemonConfig
from tests.paths import REPO

pytestmark = pytest.mark.slow

EXAMPLES = os.environ.get("MLS_SYNC_FUZZ_EXAMPLES", "15")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]


async def test_every_generated_request_gets_an_answer_the_openapi_document_describes(
    tmp_path: Path, daemon_config: DaemonConfig
) -> None:
    assert daemon_config.settings().sandbox.enabled is False
    daemon = daemon_config.start()
    try:
        await daemon.wait_notify("READY=1")
        result = await anyio.to_thread.run_sync(
            lambda: subprocess.run(  # noqa: S603
                [
                    str(SCHEMATHESIS),
                    "run",
                    f"{daemon.url}/openapi.json",
                    "-H",
                    f"Authorization: Bearer {API_TOKEN}",
                    "-c",
                    ",".join(CHECKS),
                    "-n",
                    EXAMPLES,
                    "--seed",
                    "1",
                    "--exclude-path-regex",
                    "/sync$|/webhook",
                    "--report-dir",
                    str(tmp_path / "reports"),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=tmp_path,
                env={
                    **os.environ,
                    "SCHEMATHESIS_HOOKS": "tests.reliability.fuzz_hooks",
                    # The hooks are imported by module name: from this repository, wherever
                    # the run's working folder is.
                    "PYTHONPATH": os.pathsep.join(
                        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
                    ),
                },
                check=False,
            )
        )
        assert daemon.proc.poll() is None, daemon.log()
    finally:
        daemon.stop()
    summary = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    print(f"\nschemathesis: {summary.group(0) if summary else result.stdout[-300:]}")
    assert result.returncode == 0, result.stdout[-3000:]
    assert summary is not None and summary.group(1) == summary.group(2)
    # Everything but the four sync operations (a user's too) and the ten webhook operations;
    # the push route too (with the API token, every push is a 401, as documented).
    assert "Selected: 43/57" in result.stdout
