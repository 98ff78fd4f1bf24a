"""Where every `mls-sync` process starts (the console script, `python -m daemon`): the
collector is tuned before the imports, not after them.

The imports build a great many objects (modules, classes, validators, the API's routes); with
CPython's default young generation they set off many collections that find next to nothing
(docs/benchmarks.md "The test suite's CPU"). The daemon's thresholds (daemon/gc_tuning.py)
apply from the first import instead.
"""

from __future__ import annotations

from daemon import gc_tuning


def main() -> None:
    gc_tuning.set_thresholds()
    from daemon.main import main as run  # the CLI, and everything it imports

    run()
