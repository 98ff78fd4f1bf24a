"""Where secrets come from: the environment first, then systemd's credentials directory."""

from __future__ import annotations

import stat
from pathlib import Path

from daemon.credentials import read_secret, sandbox_secret_key
from daemon.encryption import SecretBox


def test_the_environment_wins_over_the_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "secret-key").write_text("from-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "MLS_SYNC_SECRET_KEY": "from-env"}
    secret = read_secret("MLS_SYNC_SECRET_KEY", "secret-key", env)
    assert secret is not None and secret.value == "from-env"
    assert "from-env" not in repr(secret)


def test_a_systemd_credential_file_is_read_and_trimmed(tmp_path: Path) -> None:
    (tmp_path / "api-token").write_text("  tok-123\n")
    secret = read_secret(
        "MLS_SYNC_API_TOKEN", "api-token", {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    )
    assert secret is not None
    assert (secret.value, secret.origin) == ("tok-123", "$CREDENTIALS_DIRECTORY/api-token")


def test_nothing_configured_is_none(tmp_path: Path) -> None:
    assert (
        read_secret("MLS_SYNC_API_TOKEN", "api-token", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
        is None
    )
    assert read_secret("MLS_SYNC_API_TOKEN", "api-token", {}) is None


def test_the_sandbox_key_is_made_once_owner_only_and_reused(tmp_path: Path) -> None:
    first = sandbox_secret_key(tmp_path / "state")
    second = sandbox_secret_key(tmp_path / "state")
    assert first.value == second.value
    assert stat.S_IMODE((tmp_path / "state" / "sandbox-secret-key").stat().st_mode) == 0o600
    box = SecretBox(first.value)
    assert box.decrypt(box.encrypt("x")) == "x"
