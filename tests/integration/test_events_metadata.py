"""`mls-sync connections add --mode events` asks the server's $metadata whether it keeps a
change log (the EntityEvent resource) before it stores anything: the CLI as a subprocess,
the sandbox MLS on loopback (docs/mls-reso.md "The change log")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio

from daemon.encryption import generate_key
from tests.helpers import STATIC_TOKEN, Mls
from tests.integration.test_cli import mls_sync

DEAD = "http://127.0.0.1:9/odata"  # nothing listens on the discard port


async def _add(folder: Path, base_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`connections add --mode events`, run in a thread: the sandbox MLS answers from this
    test's event loop, which must go on meanwhile."""
    env = {
        "MLS_SYNC_SECRET_KEY": (folder / "key").read_text(),
        "T": STATIC_TOKEN,
        "MLS_SYNC_MLS__MAX_ATTEMPTS": "1",
    }
    args: tuple[str, ...] = (
        "connections",
        "add",
        "--id",
        "ev",
        "--name",
        "Ev",
        "--base-url",
        base_url,
    )
    args += ("--secret-env", "T", "--mode", "events", *extra)
    return await anyio.to_thread.run_sync(lambda: mls_sync(*args, cwd=folder, env=env))


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    (tmp_path / "key").write_text(generate_key())
    return tmp_path


async def _listed(folder: Path) -> str:
    env = {"MLS_SYNC_SECRET_KEY": (folder / "key").read_text()}
    shown = await anyio.to_thread.run_sync(
        lambda: mls_sync("connections", "list", cwd=folder, env=env)
    )
    return shown.stdout


async def test_a_server_that_keeps_a_change_log_takes_an_events_connection(
    tmp_path: Path, mls: Mls
) -> None:
    folder = _folder(tmp_path)
    added = await _add(folder, mls[1])
    assert added.returncode == 0, added.stderr
    assert "Ev" in await _listed(folder)  # its name, in the list


async def test_a_server_without_a_change_log_is_refused_for_events_mode_and_nothing_is_stored(
    tmp_path: Path, mls: Mls
) -> None:
    mls[0].declares_entity_event = False
    folder = _folder(tmp_path)

    refused = await _add(folder, mls[1])

    assert refused.returncode != 0
    assert "declares no EntityEvent resource" in refused.stderr
    assert "use mode by_key" in refused.stderr and "Traceback" not in refused.stderr
    assert "(none)" in await _listed(folder)
    by_key = await _add(folder, mls[1], "--mode", "by_key")  # the last --mode is taken
    assert by_key.returncode == 0, by_key.stderr


async def test_a_server_whose_metadata_cannot_be_read_is_refused_unless_told_not_to_ask(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path)

    refused = await _add(folder, DEAD)

    assert refused.returncode != 0
    assert "cannot read the $metadata of connection 'ev'" in refused.stderr
    assert "--no-metadata-check" in refused.stderr
    assert STATIC_TOKEN not in refused.stderr
    unchecked = await _add(folder, DEAD, "--no-metadata-check")
    assert unchecked.returncode == 0, unchecked.stderr
