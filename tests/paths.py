"""Where the repository's own files are, for the tests that read them (the shipped config,
the README, the systemd units) or run a module from it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
