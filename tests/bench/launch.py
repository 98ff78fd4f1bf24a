"""How the benchmark starts its measured cycles and its sandbox servers.

A full run starts each as a fresh interpreter, as a daemon starts. The smoke run (`--smoke`,
which the test suite runs) asks the tests' fork server (tests/cli_forkserver.py) instead: its
children skip the interpreter's start and the imports, which were most of a smoke cycle's CPU
and, over the suite, a measurable share of its time (docs/benchmarks.md "The test suite's
CPU"). What a process measures is its own either way: a cycle's CPU is counted from the
cycle's start, a server's from the moment the benchmark first reads it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests import cli_forkserver

REPO = Path(__file__).resolve().parents[2]

Process = subprocess.Popen[bytes] | cli_forkserver.Forked


class Launcher:
    """Fresh interpreters, or (`forked`) the fork server's children."""

    forked = False


def started(
    module: str, args: list[str], env: dict[str, str], stdio: tuple[int, int, int]
) -> Process:
    """`python -m MODULE ARGS` in the repository with exactly `env`, on the file descriptors
    `stdio` (its stdin, stdout and stderr, closed here once the child has them)."""
    if Launcher.forked:
        return cli_forkserver.start(args, cwd=REPO, env=env, stdio=stdio, module=module)
    try:
        return subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=env,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
        )
    finally:
        for fd in set(stdio):
            os.close(fd)


def finished(
    module: str, args: list[str], env: dict[str, str], prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` run to its end, its output captured; `prefix`: a program it
    runs under (a profiler), which takes a fresh interpreter. An exit other than 0 raises
    `CalledProcessError`, with what it wrote to stderr."""
    if Launcher.forked and not prefix:
        # As long as a full-size cycle may take: the smoke's take seconds.
        done = cli_forkserver.run(args, cwd=REPO, env=env, module=module, timeout=3600)
    else:
        done = subprocess.run(  # noqa: S603 - our own modules, fixed arguments
            [*prefix, sys.executable, "-m", module, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
        )
    done.check_returncode()
    return done


def devnull() -> int:
    """A file descriptor on /dev/null, for a child's stdin."""
    return os.open(os.devnull, os.O_RDONLY)
