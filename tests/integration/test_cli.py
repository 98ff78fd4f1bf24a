"""The command line as a person uses it: a real subprocess, real files, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.encryption import generate_key

REPO = Path(__file__).resolve().parents[2]


def mls_sync(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLS_SYNC_")}
    full_env.update(env or {})
    return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "daemon.cli", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Path:
    """A copy of the shipped config.toml, so its database lands in the temp dir."""
    (tmp_path / "config.toml").write_text((REPO / "config.toml").read_text())
    return tmp_path


def test_check_config_refuses_a_bad_file_with_exit_78(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sync]\ninterval_seconds = -1\n")
    result = mls_sync("check-config", cwd=tmp_path)
    assert result.returncode == 78
    assert "[sync] interval_seconds = -1" in result.stderr
    assert result.stdout == ""


def test_check_config_prints_the_effective_settings_with_secrets_masked(sandbox_dir: Path) -> None:
    key = generate_key()
    result = mls_sync(
        "check-config",
        cwd=sandbox_dir,
        env={"MLS_SYNC_SECRET_KEY": key, "MLS_SYNC_API_TOKEN": "t0p-s3cret"},
    )
    assert result.returncode == 0, result.stderr
    assert '"interval_seconds": 900' in result.stdout
    assert "environment variable MLS_SYNC_SECRET_KEY" in result.stdout
    assert key not in result.stdout and "t0p-s3cret" not in result.stdout


def test_sync_on_the_sandbox_prints_a_summary_and_records_the_run(sandbox_dir: Path) -> None:
    first = mls_sync("sync", cwd=sandbox_dir)
    assert first.returncode == 0, first.stderr
    assert "run 1 (manual, all): ok" in first.stdout
    assert "listings checked 300" in first.stdout
    second = mls_sync("sync", "--quiet", cwd=sandbox_dir)
    assert second.returncode == 0
    history = mls_sync("history", cwd=sandbox_dir)
    assert history.returncode == 0
    assert [line.split()[0] for line in history.stdout.splitlines()[1:]] == ["2", "1"]


def test_a_connection_added_from_the_cli_never_shows_its_secret(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    env = {"MLS_SYNC_SECRET_KEY": generate_key(), "MY_TOKEN": "bearer-abc-123-very-secret"}
    added = mls_sync(
        "connections",
        "add",
        "--id",
        "crmls",
        "--name",
        "CRMLS",
        "--base-url",
        "http://127.0.0.1:9/odata",
        "--secret-env",
        "MY_TOKEN",
        cwd=tmp_path,
        env=env,
    )
    assert added.returncode == 0, added.stderr
    for args in (
        ("connections", "list"),
        ("connections", "show", "crmls"),
        ("connections", "show", "crmls", "--json"),
    ):
        shown = mls_sync(*args, cwd=tmp_path, env=env)
        assert shown.returncode == 0 and "crmls" in shown.stdout
        assert "bearer-abc-123" not in shown.stdout + shown.stderr
    db = (tmp_path / "state" / "mls-sync.db").read_bytes()
    assert b"bearer-abc-123" not in db


def test_a_bad_connection_definition_is_refused_and_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    result = mls_sync(
        "connections",
        "add",
        "--id",
        "x",
        "--name",
        "X",
        "--base-url",
        "ftp://mls.example",
        "--batch-size",
        "0",
        cwd=tmp_path,
        env={"MLS_SYNC_SECRET_KEY": generate_key()},
    )
    assert result.returncode == 2
    assert "base_url" in result.stderr and "batch_size = 0" in result.stderr
    assert not (tmp_path / "state").exists()


def test_a_csv_with_one_bad_row_imports_nothing(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sandbox]\nenabled = false\n")
    env = {"MLS_SYNC_SECRET_KEY": generate_key(), "T": "tok"}
    mls_sync(
        "connections",
        "add",
        "--id",
        "m",
        "--name",
        "M",
        "--base-url",
        "http://127.0.0.1:9",
        "--secret-env",
        "T",
        cwd=tmp_path,
        env=env,
    )
    csv = tmp_path / "listings.csv"
    csv.write_text(
        "id,connection_id,listing_key,status\nL1,m,K1,active\nL2,m,,sold\nL3,m,K3,gone\n"
    )

    bad = mls_sync("listings", "import", str(csv), cwd=tmp_path, env=env)

    assert bad.returncode == 65
    assert "line 3: listing_key" in bad.stderr and "line 4: status = 'gone'" in bad.stderr
    listed = mls_sync("listings", "list", cwd=tmp_path, env=env)
    assert "(none)" in listed.stdout

    csv.write_text("id,connection_id,listing_key\nL1,m,K1\nL2,m,K2\n")
    good = mls_sync("listings", "import", str(csv), cwd=tmp_path, env=env)
    assert good.returncode == 0, good.stderr
    assert "2 listing(s) added" in good.stdout


def test_an_unknown_listing_is_a_clear_error_not_a_traceback(sandbox_dir: Path) -> None:
    result = mls_sync("sync", "--listing", "nope", cwd=sandbox_dir)
    assert result.returncode == 1
    assert "no listing 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_explains_itself(tmp_path: Path) -> None:
    for args in (
        ("--help",),
        ("sync", "--help"),
        ("history", "--help"),
        ("connections", "add", "--help"),
        ("listings", "import", "--help"),
        ("check-config", "--help"),
    ):
        result = mls_sync(*args, cwd=tmp_path)
        assert result.returncode == 0 and "Usage: mls-sync" in result.stdout


def test_selective_sync_from_the_cli(sandbox_dir: Path) -> None:
    """pause/resume a connection and exclude/include a listing, then see the effect."""
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    steps = [
        (("connections", "pause", "sandbox-1"), "connection sandbox-1 paused"),
        (("listings", "exclude", "L-SBX002-000001"), "excluded from sync"),
    ]
    for args, said in steps:
        result = mls_sync(*args, cwd=sandbox_dir)
        assert result.returncode == 0 and said in result.stdout, result.stderr
    synced = mls_sync("sync", cwd=sandbox_dir)
    assert "connections 2, listings checked 199" in synced.stdout
    refused = mls_sync("sync", "--connection", "sandbox-1", cwd=sandbox_dir)
    assert refused.returncode == 1 and "is paused" in refused.stderr
    for args in (
        ("connections", "resume", "sandbox-1"),
        ("listings", "include", "L-SBX002-000001"),
    ):
        assert mls_sync(*args, cwd=sandbox_dir).returncode == 0
    assert "listings checked 300" in mls_sync("sync", cwd=sandbox_dir).stdout
    one = mls_sync("sync", "--listing", "L-SBX002-000001", cwd=sandbox_dir)
    assert one.returncode == 0 and "listings checked 1" in one.stdout


def test_removing_a_connection_with_listings_needs_to_be_asked_for(sandbox_dir: Path) -> None:
    assert mls_sync("sync", cwd=sandbox_dir).returncode == 0
    refused = mls_sync("connections", "remove", "sandbox-3", cwd=sandbox_dir)
    assert refused.returncode == 2 and "--with-listings" in refused.stderr
    removed = mls_sync("connections", "remove", "sandbox-3", "--with-listings", cwd=sandbox_dir)
    assert removed.returncode == 0 and "with 100 listing(s)" in removed.stdout
