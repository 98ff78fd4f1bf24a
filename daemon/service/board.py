"""What /status, /readyz and /metrics read from the database: a snapshot, refreshed in the
background through a read-only connection of its own.

These routes are polled (load balancers, dashboards, Prometheus) while a cycle keeps the
writer's connection busy. Read through the writer, each answer waited its turn behind the
cycle's transactions, and rendering a thousand connections per answer took CPU from the cycle.
Now the database part is read beside the writer (WAL lets readers and one writer work at
once), at most every `max_age` seconds and only while someone is asking, and rendered once per
refresh. A write that a caller will look for next (a finished cycle, a /v1 change) marks the
snapshot stale, and the next answer waits for a fresh one. docs/reliability.md has the load
test's figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import structlog

from daemon.config import CheckIntervalSettings
from daemon.ops.connections import tiers_shown
from daemon.store import connections, listings, posts, runs
from daemon.store.database import Database
from daemon.sync.holders import this_process
from daemon.timestamps import iso, utcnow

log = structlog.get_logger("mls_sync.status")

LAST_RUNS = 5
# The check tiers are summed over every listing; they move with cycles, minutes apart, so
# /status (polled every second by some) sums them at most this often, and after a change.
TIERS_MAX_AGE = 60.0


class BoardUnavailable(Exception):
    """The database could not be read for /status."""


@dataclass(frozen=True)
class Snapshot:
    taken_at: str
    connections_by_state: dict[str, int]
    listings_by_status: dict[str, int]
    posts_by_status: dict[str, int]
    running_cycle: runs.Tally | None  # this process's cycle, as far as it has got
    body: bytes  # this snapshot's part of /status, a JSON object, rendered once


class StatusBoard:
    def __init__(
        self,
        reader: Database,
        max_age: float = 1.0,
        check_intervals: CheckIntervalSettings | None = None,
    ) -> None:
        self.reader = reader
        self.max_age = max_age
        # As the scheduled cycle applies them (a reload replaces them); None: tiers are off.
        self.check_intervals = check_intervals
        self._tiers: tuple[float, dict[str, dict[str, Any]] | None] | None = None
        # Counts `changed()`: a tier summary begun before a change is not kept after it.
        self._changes = 0
        self._snapshot: Snapshot | None = None
        self._taken = 0.0
        self._stale = True
        self._asked = anyio.Event()  # someone wants a fresher snapshot than the one held
        self._change = anyio.Event()  # ... and it must not wait for max_age
        self._refreshed = anyio.Event()
        self.error: str | None = None  # why the last refresh failed
        self._ping_lock = anyio.Lock()
        self._ping_ms: float | None = None
        self._pinged = 0.0

    async def current(self) -> Snapshot:
        """The snapshot; waits only for the first one, or for a fresh one after `changed()`."""
        while self._stale or self._snapshot is None:
            self._asked.set()
            await self._refreshed.wait()
            if self.error is not None:
                raise BoardUnavailable(self.error)
        if time.monotonic() - self._taken >= self.max_age:
            self._asked.set()  # answered from this one; the next answer gets a newer one
        return self._snapshot

    def changed(self) -> None:
        """Something a caller will look for next was written: the next answer is fresh."""
        self._stale = True
        self._tiers = None  # a cycle's checks moved them
        self._changes += 1
        self._asked.set()
        self._change.set()

    async def ping(self) -> float:
        """Milliseconds for the database to answer a query (readiness). Asked at most once per
        `max_age`, however many probes arrive: they share the last answer."""
        async with self._ping_lock:
            if self._ping_ms is None or time.monotonic() - self._pinged >= self.max_age:
                started = time.perf_counter()
                async with self.reader.reading() as conn:
                    await conn.fetch_all("SELECT 1")
                self._ping_ms = (time.perf_counter() - started) * 1000
                self._pinged = time.monotonic()
            return self._ping_ms

    async def _check_tiers(self) -> dict[str, dict[str, Any]] | None:
        if self._tiers is None or time.monotonic() - self._tiers[0] >= TIERS_MAX_AGE:
            settings = self.check_intervals
            changes = self._changes
            shown = None if settings is None else await tiers_shown(self.reader, settings, utcnow())
            if changes != self._changes:  # read in part before a change: shown once, not kept
                return shown
            self._tiers = time.monotonic(), shown
        return self._tiers[1]

    async def run(self) -> None:
        """Refreshes when asked to, never more often than every `max_age` seconds unless a
        change was announced."""
        while True:
            await self._asked.wait()
            self._asked = anyio.Event()
            if not self._stale:
                with anyio.move_on_after(self._taken + self.max_age - time.monotonic()):
                    await self._change.wait()
            self._change = anyio.Event()
            self._stale = False  # a change announced from here on needs the next refresh
            try:
                self._snapshot = await _read(self.reader, await self._check_tiers())
                self._taken = time.monotonic()
                self.error = None
            except Exception as exc:  # the routes answer 503; the next ask tries again
                self.error = f"cannot read the database: {type(exc).__name__}: {exc}"
                log.error("status_read_failed", error=self.error)
            self._refreshed.set()
            self._refreshed = anyio.Event()


async def _read(db: Database, tiers: dict[str, dict[str, Any]] | None) -> Snapshot:
    taken_at = iso(utcnow())
    rows = await connections.summaries(db, taken_at)
    by_state: dict[str, int] = {}
    for row in rows:
        by_state[row["state"]] = by_state.get(row["state"], 0) + 1
    listing_counts = await listings.count_by_status(db)
    post_counts = await posts.count_by_status(db)
    part: dict[str, Any] = {
        "as_of": taken_at,
        "last_runs": [asdict(r) for r in await runs.recent(db, LAST_RUNS)],
        "connections": rows,
        "listings_by_status": listing_counts,
        "posts_by_status": post_counts,
        "check_tiers": tiers,
    }
    cycle = await runs.running_cycle(db, this_process())
    return Snapshot(
        taken_at, by_state, listing_counts, post_counts, cycle, json.dumps(part).encode()
    )
