"""The README's operator story, run as written: the daemon as a subprocess, managed from the
shell with `mls-sync --api` over its /v1 API (a real MLS connection added, 10,000 listings
imported, listed page by page, one removed, a cycle run and its run's errors read).

Only what cannot be the same here is replaced: the daemon's port, where the admin token is
read from, the MLS vendor's URLs (a sandbox MLS on loopback stands in, with the README's
client id and secret), and the connection's rate (the stand-in has no limit to respect, and
10,000 listings at the vendor's 2 requests a second would take minutes).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from anyio import run_process

from tests.e2e.daemon_process import API_TOKEN, DaemonConfig
from tests.helpers import Mls, Platforms
from tests.paths import REPO

pytestmark = pytest.mark.slow

README = REPO / "README.md"
VENDOR_TOKEN_URL = "https://api-trestle.corelogic.com/trestle/oidc/connect/token"
VENDOR_BASE_URL = "https://api-trestle.corelogic.com/trestle/odata"
LISTINGS = 10_000
MARK = "@@ "
UNKNOWN_STATUS_KEY = "K-0007"  # the MLS answers a status no mapping knows: a recorded error


def operator_block(readme: str) -> str:
    """The README's ```sh block that manages the daemon with `mls-sync --api`."""
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, flags=re.S | re.M)
    found = [b for b in blocks if "export MLS_SYNC_API_URL" in b]
    assert len(found) == 1, "the README's operator block (export MLS_SYNC_API_URL=...)"
    return str(found[0])


def marked(block: str) -> str:
    """The block as a script that announces each command before it runs it."""
    lines: list[str] = []
    for command in block.replace("\\\n", " ").splitlines():
        code = command.split("  #", 1)[0].strip()
        if code:
            lines.append(f"echo {json.dumps(MARK + code)}; {code}")
    return "set -e\n" + "\n".join(lines) + "\n"


async def test_the_readme_operator_story_runs_against_the_daemon(
    tmp_path: Path, secret_key: str, mls: Mls, platforms: Platforms
) -> None:
    sandbox, mls_url = mls
    sandbox.add_client("ID", "CLIENT_SECRET")
    for n in range(LISTINGS):
        sandbox.put(f"K-{n:04d}", "Weird" if f"K-{n:04d}" == UNKNOWN_STATUS_KEY else "Active")
    (tmp_path / "trestle-secret").write_text("CLIENT_SECRET\n")
    rows = [f"L-{n:04d},trestle,K-{n:04d}" for n in range(LISTINGS)]
    (tmp_path / "listings.csv").write_text("id,connection_id,listing_key\n" + "\n".join(rows))
    token_file = tmp_path / "api-token"
    token_file.write_text(API_TOKEN + "\n")
    config = DaemonConfig.write(tmp_path, platforms[1], secret_key, interval=86_400)
    readme = README.read_text()
    for written in ("sudo cat /etc/mls-sync/api-token", "~/.mls-sync-token", "127.0.0.1:8787"):
        assert written in readme, f"the README no longer shows {written}: update this test"
    block = (
        operator_block(readme)
        .replace("sudo cat /etc/mls-sync/api-token", f"cat {token_file}")
        .replace("~/.mls-sync-token", str(tmp_path / "mls-sync-token"))
        .replace("127.0.0.1:8787", f"127.0.0.1:{config.port}")
        .replace(VENDOR_TOKEN_URL, f"{mls_url}/oauth/token")
        .replace(VENDOR_BASE_URL, mls_url)
        .replace("--scope api", "--scope api --rate 200 --batch-size 200")
    )
    wrapper = f'mls-sync() {{ {sys.executable} -m daemon "$@"; }}\n'
    daemon = config.start()
    try:
        await daemon.wait_notify("READY=1")
        done = await run_process(
            ["bash", "-c", wrapper + marked(block)], cwd=tmp_path, check=False, stderr=-2
        )
        said = done.stdout.decode()
        assert done.returncode == 0, said
        out = Outputs(said)

        assert "connection trestle added" in out["mls-sync connections add"]
        assert (
            f"{LISTINGS} row(s) read, {LISTINGS} listing(s) added"
            in out["mls-sync listings import"]
        )
        first_page = out["mls-sync listings list --connection trestle"]
        assert f"100 of {LISTINGS:,} shown" in first_page
        assert "mls-sync listings list --connection trestle --after L-0099" in first_page
        assert first_page.count("\nL-0") == 100
        after = json.loads(out["mls-sync listings list --connection trestle --after L-0100 --json"])
        assert after["items"][0]["id"] == "L-0101" and after["total"] == LISTINGS
        assert "listing L-0042 removed" in out["mls-sync listings remove"]
        synced = out["mls-sync sync"]
        assert "run 2 (http, all): partial" in synced  # the daemon ran it; this followed it
        assert f"listings checked {LISTINGS - 1}" in synced
        errors = out["mls-sync history --run 2"]
        assert "unknown StandardStatus" in errors and "L-0007" in errors
        assert "mls_" in out["mls-sync tokens create"]  # shown once

        listed = await daemon.call("GET", "/v1/listings", params={"q": "K-004", "limit": 20})
        assert [i["id"] for i in listed.json()["items"]] == [
            f"L-{n:04d}" for n in range(40, 50) if n != 42
        ]
        monitoring = await daemon.call("GET", "/v1/tokens")
        assert [t["name"] for t in monitoring.json()["items"]] == ["monitoring"]
    finally:
        daemon.stop()


class Outputs:
    """What each command of the block printed (stdout and stderr), by its text."""

    def __init__(self, said: str) -> None:
        self.runs: list[tuple[str, str]] = []
        for line in said.splitlines():
            if line.startswith(MARK):
                self.runs.append((line.removeprefix(MARK), ""))
            elif self.runs:
                command, out = self.runs[-1]
                self.runs[-1] = (command, out + "\n" + line)

    def __getitem__(self, start: str) -> str:
        """The output of the one command that is `start`, or begins with `start` and a space
        (the command as written may go on with options)."""
        exact = [out for command, out in self.runs if command == start]
        found = exact or [out for command, out in self.runs if command.startswith(start + " ")]
        assert len(found) == 1, (start, [c for c, _ in self.runs])
        return found[0]
