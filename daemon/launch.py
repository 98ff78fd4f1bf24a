"""Where every `mls-sync` process starts (the console script, `python -m daemon.cli`): the
collector is tuned before the imports, not after them.

The imports build some hundred thousand objects (modules, classes, validators, the API's
routes); with CPython's default young generation of 700 they set off hundreds of collections
that find next to nothing, a tenth of a command's start-up. The daemon's thresholds
(daemon/gc_tuning.py) apply from the first import instead.
"""

from __future__ import annotations

from daemon import gc_tuning


def main() -> None:
    gc_tuning.set_thresholds()
    from daemon.main import main as run  # the CLI, and everything it imports

    run()
