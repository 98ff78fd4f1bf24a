"""Where the daemon's own secrets come from: the environment or systemd credentials.

Secrets are never read from config.toml. Under systemd, `LoadCredential=secret-key:/etc/...`
puts the file in `$CREDENTIALS_DIRECTORY`, readable only by the service.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.encryption import SecretBox, SecretKeyError
from daemon.state_dir import cannot_create, make_folder

SECRET_KEY_ENV = "MLS_SYNC_SECRET_KEY"  # noqa: S105 - where to look, not a secret
SECRET_KEY_CREDENTIAL = "secret-key"  # noqa: S105 - where to look, not a secret
API_TOKEN_ENV = "MLS_SYNC_API_TOKEN"  # noqa: S105 - where to look, not a secret
API_TOKEN_CREDENTIAL = "api-token"  # noqa: S105 - where to look, not a secret
DATABASE_PASSWORD_ENV = "MLS_SYNC_DATABASE_PASSWORD"  # noqa: S105 - where to look, not a secret
DATABASE_PASSWORD_CREDENTIAL = "database-password"  # noqa: S105 - where to look, not a secret
SMTP_PASSWORD_ENV = "MLS_SYNC_SMTP_PASSWORD"  # noqa: S105 - where to look, not a secret
SMTP_PASSWORD_CREDENTIAL = "smtp-password"  # noqa: S105 - where to look, not a secret
SANDBOX_KEY_FILE = "sandbox-secret-key"


@dataclass(frozen=True)
class Secret:
    """A secret value and where it came from (the origin may be shown; the value never)."""

    value: str
    origin: str

    def __repr__(self) -> str:
        return f"Secret(origin={self.origin!r}, value=<redacted>)"


def read_secret(
    env_name: str, credential: str, environ: Mapping[str, str] | None = None
) -> Secret | None:
    environ = os.environ if environ is None else environ
    if value := environ.get(env_name, "").strip():
        return Secret(value, f"environment variable {env_name}")
    if directory := environ.get("CREDENTIALS_DIRECTORY"):
        path = Path(directory) / credential
        if path.is_file():
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return Secret(value, f"$CREDENTIALS_DIRECTORY/{credential}")
    return None


def sandbox_secret_key(state_dir: Path) -> Secret:
    """The sandbox needs a key too (its MLS credentials are encrypted like real ones), but a
    newcomer has none: make one beside the database, owner-only, and reuse it."""
    from daemon.encryption import generate_key

    path = state_dir / SANDBOX_KEY_FILE
    if not path.exists():
        make_folder(state_dir, path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise cannot_create(path, exc) from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(generate_key() + "\n")
    return Secret(path.read_text(encoding="utf-8").strip(), f"sandbox key file {path}")


def require_box(box: SecretBox | None) -> SecretBox:
    """The key, or the error that says how to configure one."""
    if box is None:
        raise SecretKeyError(
            f"no secret key is configured: set {SECRET_KEY_ENV} or provide "
            f"$CREDENTIALS_DIRECTORY/{SECRET_KEY_CREDENTIAL} (make one with "
            "`mls-sync generate-key`)"
        )
    return box
