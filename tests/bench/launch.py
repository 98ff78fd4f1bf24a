"""How the benchmark starts its measured processes: its cycles, its sandbox servers, and the
floors' bare requests.

A full run starts each as a fresh interpreter, as a daemon starts. The smoke run (`--smoke`,
which the test suite runs) asks the tests' fork server (tests/cli_forkserver.py) instead: its
children skip the interpreter's start and the imports, which were most of a smoke cycle's CPU
and, over the suite, a measurable share of its time (docs/benchmarks.md "The test suite's
CPU"). The CPU figures are the process's own either way: a cycle's is counted from the
cycle's start, a server's from the moment the benchmark first reads it. Peak RSS is not: a
forked child's high-water mark starts at the fork server's resident size, so a smoke run's
peak RSS says nothing of a daemon's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests import cli_forkserver
from tests.paths import REPO

Process = subprocess.Popen[bytes] | cli_forkserver.Forked


class Launcher:
    """Fresh interpreters, or (`forked`) the fork server's children: see `forking`."""

    forked = False


@contextmanager
def forking(forked: bool) -> Iterator[None]:
    """Within the block, processes start as `forked` says; after it, as before."""
    before, Launcher.forked = Launcher.forked, forked
    try:
        yield
    finally:
        Launcher.forked = before


def started(
    module: str, args: list[str], env: dict[str, str], stdio: tuple[int, int, int]
) -> Process:
    """`python -m MODULE ARGS` in the repository with exactly `env`, on the file descriptors
    `stdio` (its stdin, stdout and stderr, closed here once the child has them)."""
    return cli_forkserver.start(
        args, cwd=REPO, env=env, stdio=stdio, module=module, fresh=not Launcher.forked
    )


def finished(
    module: str,
    args: list[str],
    env: dict[str, str],
    prefix: Sequence[str] = (),
    tree: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` run to its end, its output captured; `prefix`: a program it
    runs under (a profiler), which takes a fresh interpreter. `tree`: another checkout of
    the repository whose code it runs (in a fresh interpreter), else this one. An exit other
    than 0 raises `CalledProcessError`, with what it wrote to stderr."""
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    # No time limit, as subprocess.run has none: a full-size cycle takes minutes.
    done = cli_forkserver.run(
        args,
        cwd=tree or REPO,
        env=env,
        module=module,
        fresh=tree is not None or not Launcher.forked,
        prefix=prefix,
        timeout=None,
    )
    done.check_returncode()
    return done


def devnull() -> int:
    """A file descriptor on /dev/null, for a child's stdin."""
    return os.open(os.devnull, os.O_RDONLY)
