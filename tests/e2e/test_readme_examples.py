"""The README's curl examples, run as written with the real curl against the daemon as a
subprocess, in the order the README gives them.

Only what cannot be the same here is replaced: the daemon's port, the file the API token is
read from, and the MLS vendor's URLs (a sandbox MLS on loopback stands in for the vendor, with
the README's client id and secret). Each command must get the status its comment names
(`# 202 ...`), or a 2xx when it names none.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from anyio import run_process

from tests.e2e.daemon_process import API_TOKEN, DaemonConfig
from tests.helpers import Mls, Platforms
from tests.paths import REPO

README = REPO / "README.md"
VENDOR_TOKEN_URL = "https://api-trestle.corelogic.com/trestle/oidc/connect/token"
VENDOR_BASE_URL = "https://api-trestle.corelogic.com/trestle/odata"
STATUS_MARK = "@@status "
# Every curl of the examples goes through this: the status follows the body on its own line.
WRAPPER = (
    f"curl() {{ command curl --max-time 30 -w '\\n{STATUS_MARK}%{{http_code}}\\n' \"$@\"; }}\n"
)


def curl_blocks(readme: str) -> list[str]:
    """The README's ```sh blocks that are curl examples."""
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, flags=re.S | re.M)
    return [b for b in blocks if re.search(r"^curl ", b, flags=re.M)]


def commands(block: str) -> list[tuple[str, int | None]]:
    """Each curl command of a block (it may span lines inside quotes), with the status its
    comment names, if any."""
    found: list[tuple[str, int | None]] = []
    current, comment, quote, i = "", "", "", 0
    while i < len(block):
        char = block[i]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif block.startswith("\\\n", i):  # a line continued
            current, i = current + " ", i + 2
            continue
        elif char == "#" and (not current or current[-1].isspace()):
            end = block.find("\n", i)
            comment, i = block[i + 1 : end].strip(), end
            continue
        elif char in ";\n":
            _keep(found, current, comment)
            current, comment = "", ""
            i += 1
            continue
        current += char
        i += 1
    _keep(found, current, comment)
    return found


def _keep(found: list[tuple[str, int | None]], command: str, comment: str) -> None:
    if command.strip().startswith("curl "):
        status = re.match(r"(\d{3})\b", comment)
        found.append((command.strip(), int(status.group(1)) if status else None))


def test_commands_are_read_with_their_statuses() -> None:
    block = (
        "X=1; curl -s a  # 202 ok\ncurl -d '{\"a\":\n 1}' b   # a comment\ncurl c; curl \\\n d\n"
    )
    assert commands(block) == [
        ("curl -s a", 202),
        ("curl -d '{\"a\":\n 1}' b", None),
        ("curl c", None),
        ("curl   d", None),
    ]


async def test_the_readme_curl_examples_run_as_written(
    tmp_path: Path,
    secret_key: str,
    mls: Mls,
    platforms: Platforms,
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is needed to run the README's examples: apt-get install curl")
    sandbox, mls_url = mls
    sandbox.add_client("ID", "CLIENT_SECRET")
    sandbox.put("3yd-A1001", "Active")
    config = DaemonConfig.write(tmp_path, platforms[1], secret_key, interval=86_400)
    token_file = tmp_path / "api-token"
    token_file.write_text(API_TOKEN + "\n")
    (tmp_path / "listings.csv").write_text(  # what the import example sends
        "id,connection_id,listing_key\nL-1002,trestle,3yd-A1002\nL-1003,trestle,3yd-A1003\n"
    )
    readme = README.read_text()
    for written in ("/etc/mls-sync/api-token", "127.0.0.1:8787", VENDOR_TOKEN_URL, VENDOR_BASE_URL):
        assert written in readme, f"the README no longer shows {written}: update this test"
    here = (
        readme.replace("/etc/mls-sync/api-token", str(token_file))
        .replace("127.0.0.1:8787", f"127.0.0.1:{config.port}")
        .replace(VENDOR_TOKEN_URL, f"{mls_url}/oauth/token")
        .replace(VENDOR_BASE_URL, mls_url)
    )
    blocks = curl_blocks(here)
    assert len(blocks) == 3, "the unauthenticated examples, the /v1 examples, the event feed"
    daemon = config.start()
    try:
        await daemon.wait_notify("READY=1")
        await daemon.wait_for_run(1)
        wrong = []
        for block in blocks:
            answers = await _run(block, tmp_path)
            expected = commands(block)
            assert len(answers) == len(expected), (block, answers)
            for (command, status), (got, body) in zip(expected, answers, strict=True):
                ok = got == status if status else 200 <= got < 300
                if not ok:
                    wrong.append(f"{command}\n  -> {got} (wanted {status or '2xx'}): {body}")
        assert not wrong, "\n".join(wrong)
    finally:
        daemon.stop()


async def _run(block: str, cwd: Path) -> list[tuple[int, str]]:
    """Runs the block with bash; each curl's (status, body)."""
    done = await run_process(["bash", "-c", WRAPPER + block], cwd=cwd, check=False)
    assert done.returncode == 0, done.stderr.decode()
    answers: list[tuple[int, str]] = []
    body: list[str] = []
    for line in done.stdout.decode().splitlines():
        if line.startswith(STATUS_MARK):
            answers.append((int(line.removeprefix(STATUS_MARK)), "\n".join(body)))
            body = []
        elif line:
            body.append(line)
    return answers
