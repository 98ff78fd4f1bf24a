"""The entry point (`mls-sync`, `python -m daemon.cli`): the one place that wires the sandbox
in. A config with [sandbox] enabled opens the runtime inside the embedded sandbox; otherwise
the production runtime opens alone. No production module imports daemon/sandbox/."""

from __future__ import annotations

from daemon.cli import cli
from daemon.cli.wiring import Wiring
from daemon.sandbox.demo_cmd import demo
from daemon.sandbox.environment import runtime_for

cli.add_command(demo)


def main() -> None:
    # runtime_for opens the production runtime alone when the sandbox is off.
    cli(prog_name="mls-sync", obj=Wiring(opener=runtime_for))
