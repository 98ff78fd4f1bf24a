"""Versions of the daemon side by side: scenario A's by_key cycle, run by each version in turn
against one sandbox server and one database, every cycle and the server on one processor.

    git worktree add /tmp/before <revision>
    python -m tests.bench.versions /tmp/before .

On these shared machines one cycle's CPU, and its ratio to the server's when the two run on
different processors, moves with each processor's slow spells; on one processor the ratio
is steady (docs/benchmarks.md "The ratio's noise"). Taking turns, first one version and then
the other, with the order swapped each round, a change of a few percent shows in the medians.

Each version is a checkout of this repository, run with this one's interpreter and
packages; the database is prepared by this checkout's code, so the versions must read the
same schema (no migration between them).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.bench.bench import (
    Sizes,
    cpu_ratio,
    cycle,
    markdown_table,
    median_run,
    move,
    pinned_to_one,
    prepared,
    ratios_shown,
)
from tests.bench.engines import BY_KEY


def compare(trees: Sequence[Path], rounds: int, sizes: Sizes, work: Path) -> list[dict[str, Any]]:
    """`rounds` measured cycles of each of `trees`, taking turns (each round's order the
    last one's reversed), each after 1% of the listings moved: a row per tree, the run of
    median wall time with every run's ratio (`median_run`) and CPU, and the errors of all."""
    runs: dict[Path, list[dict[str, Any]]] = {tree: [] for tree in trees}
    with prepared(sizes.feeds, sizes.per_feed, work, BY_KEY) as (server, config, key):
        cpu = pinned_to_one(server)
        for n in range(rounds):
            for tree in trees if n % 2 == 0 else reversed(trees):
                move(server.mls, sizes.feeds * sizes.per_feed // 100)
                figures = cycle(config, key, server, cpu=cpu, tree=tree)
                if figures.get("checkout", str(tree)) != str(tree):  # older ones do not say
                    raise RuntimeError(f"the cycle of {tree} ran the code of another checkout")
                figures["sandbox_cpus"] = server.cpus()
                runs[tree].append(figures)
                print(
                    f"round {n + 1}/{rounds} {tree}: daemon {figures['cpu_seconds']} s, "
                    f"sandbox {figures['sandbox_cpu_seconds']} s, {cpu_ratio(figures)}x",
                    file=sys.stderr,
                    flush=True,
                )
    return [
        {
            "tree": str(tree),
            **median_run(runs[tree], ratios=True),
            "cpu_runs": [r["cpu_seconds"] for r in runs[tree]],
            "sandbox_cpu_runs": [r["sandbox_cpu_seconds"] for r in runs[tree]],
            "errors": sum(r["errors"] for r in runs[tree]),
        }
        for tree in trees
    ]


def render(rows: list[dict[str, Any]]) -> str:
    columns = [
        "version",
        "cycles",
        "daemon CPU s: median",
        "sandbox CPU s: median",
        "daemon CPU / sandbox CPU: median (range)",
        "errors",
    ]
    table = [
        [
            r["tree"],
            len(r["ratio_runs"]),
            round(statistics.median(r["cpu_runs"]), 3),
            round(statistics.median(r["sandbox_cpu_runs"]), 3),
            ratios_shown(r),
            r["errors"],
        ]
        for r in rows
    ]
    return "\n".join(markdown_table(columns, table))


def _checkout(text: str) -> Path:
    tree = Path(text).resolve()
    if not (tree / "daemon").is_dir() or not (tree / "tests" / "bench" / "cycle.py").is_file():
        raise argparse.ArgumentTypeError(
            f"{text} is not a checkout of this repository (no daemon/ and tests/bench/cycle.py)"
        )
    return tree


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.versions",
        description=__doc__.split("\n\n")[0],
        epilog="Example: git worktree add /tmp/before HEAD~1, then "
        "python -m tests.bench.versions /tmp/before .",
    )
    parser.add_argument("trees", nargs="+", type=_checkout, metavar="CHECKOUT")
    parser.add_argument(
        "--rounds", type=int, default=4, help="measured cycles of each version (default 4)"
    )
    parser.add_argument(
        "--feeds",
        type=int,
        default=Sizes.feeds,
        help=f"connections of {Sizes.per_feed} listings (default {Sizes.feeds})",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.feeds < 1:
        parser.error("--rounds and --feeds must be at least 1")
    if len(set(args.trees)) < len(args.trees):
        parser.error("a checkout is named twice: for the same code twice, add a second one")
    if shutil.which("taskset") is None:
        parser.error("taskset (util-linux) is needed to run the cycles on one processor")
    with tempfile.TemporaryDirectory() as work:
        rows = compare(args.trees, args.rounds, Sizes(feeds=args.feeds), Path(work))
    print(render(rows))
    return rows


if __name__ == "__main__":
    main()
