"""How the daemon tunes Python's cyclic garbage collector, and why.

With CPython's defaults (a collection of the youngest generation every 700 net allocations of
tracked objects), a cycle over 100,000 listings promotes its short-lived objects (MLS pages,
plans, HTTP exchanges in flight) into the oldest generation fast enough to start a full
collection about twice a second. Each full one walks every object the process holds (some
170,000, half of them built at start-up: modules, classes, the app) and stops the event loop
for 40-100 ms: those pauses were the slowest answers to /readyz and /status under load, and
about a tenth of a cycle's CPU (docs/reliability.md, "Load"; docs/benchmarks.md).

Two changes, both standard for long-running CPython services:
- a young generation of 10,000 objects: most of a cycle's objects die (by reference count)
  before any collection sees them, so few are promoted and full collections become rare; a
  young collection of 10,000 stays under about 20 ms;
- `gc.freeze()` once everything loaded at start-up is in place: what lives for the whole
  process (modules, classes, settings) moves to a generation no collection walks.

Memory is unchanged (the benchmark's peak RSS is the same): reference counting still frees
nearly everything at once; the collector only finds reference cycles, a bit later than before.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION = 10_000  # CPython's default is 700
OLDER_GENERATIONS = (10, 10)  # the default ratios


def set_thresholds() -> None:
    """The thresholds alone: daemon/launch.py sets them before the imports."""
    gc.set_threshold(YOUNG_GENERATION, *OLDER_GENERATIONS)


def tune() -> None:
    """Called once per process before its event loop starts. Freezes what the imports built
    without collecting first: a collection here costs about 20 ms, on every CLI command, and
    finds next to nothing."""
    set_thresholds()
    gc.freeze()


def settle() -> None:
    """Everything alive now lives for the rest of the process: collect what is garbage, then
    keep the rest out of every later collection. Call after start-up, never in a loop."""
    gc.collect()
    gc.freeze()
