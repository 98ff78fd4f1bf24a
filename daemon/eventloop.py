"""How every entry point runs its event loop: asyncio, on uvloop where it is installed.

uvloop is a dependency on Linux. Measured on the benchmark (docs/benchmarks.md), it took about
15% off the CPU of a cycle: much of a cycle's time is socket and thread hand-offs in the loop
itself (each SQLite call is a round trip to aiosqlite's thread). Nothing in the daemon depends
on which loop runs; the test suite runs the code on the plain asyncio loop and the daemon, as
a subprocess, on uvloop.

Every entry point also tunes the garbage collector first (daemon/gc_tuning.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

import anyio

from daemon import gc_tuning

T = TypeVar("T")
Args = TypeVarTuple("Args")

UVLOOP = importlib.util.find_spec("uvloop") is not None


def name() -> str:
    return "uvloop" if UVLOOP else "asyncio"


def run(func: Callable[[*Args], Awaitable[T]], *args: *Args) -> T:
    gc_tuning.tune()
    return anyio.run(func, *args, backend="asyncio", backend_options={"use_uvloop": UVLOOP})
