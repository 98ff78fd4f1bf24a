"""The entry point (`mls-sync`, `python -m daemon`, by way of daemon/launch.py): the one place
that wires the sandbox in. A config with [sandbox] enabled opens the runtime inside the
embedded sandbox; otherwise the production runtime opens alone. No production module imports
daemon/sandbox/."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from daemon.cli import cli
from daemon.cli.wiring import Wiring
from daemon.composition import Environment, Progress, Runtime, production
from daemon.config import Settings
from daemon.sandbox.demo_cmd import demo

cli.add_command(demo)


def sandbox_or_production(
    settings: Settings, on_progress: Progress
) -> AbstractAsyncContextManager[tuple[Runtime, Environment | None]]:
    """The sandbox's opener when [sandbox] is enabled, else production's. The sandbox's
    servers (and what they import: FastAPI, an OData grammar) are loaded only by a command
    that runs them: a command's start is mostly its imports."""
    if not settings.sandbox.enabled:
        return production(settings, on_progress)
    from daemon.sandbox.environment import runtime_for

    return runtime_for(settings, on_progress)


def main() -> None:
    cli(prog_name="mls-sync", obj=Wiring(opener=sandbox_or_production))
