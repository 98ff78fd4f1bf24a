"""What the entry point hands every command: how to open the runtime (daemon/main.py)."""

from __future__ import annotations

from dataclasses import dataclass

import click

from daemon.composition import Opener, production


@dataclass(frozen=True)
class Wiring:
    opener: Opener


def opener() -> Opener:
    """The entry point's opener; the production one where a command runs without it (a test
    invoking `cli` directly)."""
    wiring = click.get_current_context().find_object(Wiring)
    return wiring.opener if wiring is not None else production
