"""Scenario G: what check tiers save in MLS requests over a day (docs/mls-reso.md "Check
tiers"), and what they cost in detection time.

A day of a market is simulated on a simulated clock: 100,000 tracked listings on connections
of 100 (60% sold or off_market), with status changes at random moments. Each strategy's
scheduled cycles choose and batch their keys with the engine's own functions
(`daemon/sync/check_tiers.py`: `choose`, `filled_batches`; `daemon/mls/query.py`:
`key_batches`), so the requests counted are the requests the daemon would send. No HTTP: a
day of real cycles would take a day. Each change is timed from the MLS to the check that
finds it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.config import CheckIntervalSettings, Settings
from daemon.enums import KeyFilter
from daemon.mls.query import key_batches
from daemon.models import LocalStatus
from daemon.store.records import TrackedListing
from daemon.sync.check_tiers import choose, filled_batches
from daemon.timestamps import iso

DAY = 86_400
START = datetime(2026, 6, 1, tzinfo=UTC)
BATCH_SIZE = 50  # the connections' default
BASE_URL = "https://api.mls.example/reso/odata/Property"
MAX_URL = 2000  # [mls] max_url_length as shipped

# Of the tracked listings (the 60% closed; the live ones split as an agent's are).
MIX = {
    LocalStatus.SOLD: 0.45,
    LocalStatus.OFF_MARKET: 0.15,
    LocalStatus.ACTIVE: 0.30,
    LocalStatus.PENDING: 0.06,
    LocalStatus.COMING_SOON: 0.04,
}
# What a change does to a listing, and how often, of the day's changes.
MOVES = [
    (LocalStatus.ACTIVE, LocalStatus.PENDING, 0.40),
    (LocalStatus.PENDING, LocalStatus.SOLD, 0.30),
    (LocalStatus.COMING_SOON, LocalStatus.ACTIVE, 0.10),
    (LocalStatus.ACTIVE, LocalStatus.OFF_MARKET, 0.10),
    (LocalStatus.SOLD, LocalStatus.ACTIVE, 0.05),  # back on the market
    (LocalStatus.OFF_MARKET, LocalStatus.ACTIVE, 0.05),
]
LIVE = (LocalStatus.ACTIVE, LocalStatus.PENDING, LocalStatus.COMING_SOON)
# How far into a cycle a connection's answer may land (its turn behind the others').
ANSWER_LAG_SECONDS = 30.0


@dataclass(frozen=True)
class Market:
    """The tracked listings at the day's start (key, status, when it last changed, when it
    was last checked) and the day's changes (second of the day, key, new status)."""

    connections: int
    start: dict[str, tuple[LocalStatus, float, float]]
    changes: list[tuple[float, str, LocalStatus]]

    @classmethod
    def make(cls, listings: int, per_connection: int, changes: int, seed: int) -> Market:
        rng = random.Random(seed)
        statuses = list(MIX)
        weights = list(MIX.values())
        start: dict[str, tuple[LocalStatus, float, float]] = {}
        for n in range(listings):
            status = rng.choices(statuses, weights)[0]
            # In steady state: some changed within the last day, all checked lately.
            changed = -rng.uniform(0, DAY) if rng.random() < 0.03 else -rng.uniform(DAY, 90 * DAY)
            checked = -rng.uniform(0, 900 if status in LIVE else DAY)
            key = f"{n // per_connection:04d}-{n % per_connection:05d}"  # connection-listing
            start[key] = (status, changed, checked)
        by_status: dict[LocalStatus, list[str]] = {}
        for key, (status, _, _) in start.items():
            by_status.setdefault(status, []).append(key)
        for keys in by_status.values():
            rng.shuffle(keys)  # popped from the end: each listing changes once at most
        moves: list[tuple[float, str, LocalStatus]] = []
        for _ in range(changes):
            before, after, _w = rng.choices(MOVES, [w for _, _, w in MOVES])[0]
            moves.append((rng.uniform(0, DAY), by_status[before].pop(), after))
        moves.sort()
        return cls(listings // per_connection, start, moves)


@dataclass
class Outcome:
    requests: int = 0
    asked: int = 0  # listings asked, over the day
    found: dict[str, list[float]] = field(default_factory=dict)  # from status -> seconds
    wall_seconds: float = 0.0


def simulate(market: Market, tiers: CheckIntervalSettings | None) -> Outcome:
    """A day of scheduled cycles: every listing every 15 minutes (`tiers` None), or the due
    ones by `tiers`, on a cycle as often as the fastest tier."""
    started = time.perf_counter()
    cycle = 900 if tiers is None else Settings(check_intervals=tiers).cycle_seconds()
    truth = {k: s for k, (s, _, _) in market.start.items()}
    local: dict[str, dict[str, TrackedListing]] = {}
    for key, (status, changed, checked) in market.start.items():
        at = START + timedelta(seconds=changed)
        row = TrackedListing(
            key, key, status, iso(at), iso(START + timedelta(seconds=checked)), False
        )
        local.setdefault(key.split("-")[0], {})[key] = row
    changed_at: dict[str, tuple[float, LocalStatus]] = {}  # undetected: first change, from
    pending = iter(market.changes)
    upcoming = next(pending, None)
    out = Outcome()
    rng = random.Random(11)

    def url_length(keys: Sequence[str]) -> int:
        return len(BASE_URL) + 80 + sum(len(k) + 3 for k in keys)

    def split(keys: list[str]) -> list[list[str]]:
        return list(key_batches(keys, KeyFilter.IN, BATCH_SIZE, url_length, MAX_URL))

    for tick in range(0, DAY, cycle):
        while upcoming is not None and upcoming[0] <= tick:
            second, key, after = upcoming
            if key not in changed_at:
                changed_at[key] = (second, truth[key])
            truth[key] = after
            upcoming = next(pending, None)
        now = START + timedelta(seconds=tick)
        for rows in local.values():
            # A connection's answer lands a little into the cycle: its check is stamped then.
            lag = rng.uniform(0, ANSWER_LAG_SECONDS)
            stamp = iso(now + timedelta(seconds=lag))
            if tiers is None:
                batches = split(list(rows))
                asked = list(rows)
            else:
                choice = choose(rows.values(), now, tiers, timedelta(seconds=cycle))
                due = [t.listing_key for t in choice.first_asked()]
                batches, extra = filled_batches(due, choice.upcoming, BATCH_SIZE, split)
                asked = due + [t.listing_key for t in extra]
            out.requests += len(batches)
            out.asked += len(asked)
            for key in asked:
                row = rows[key]
                if truth[key] != row.status:
                    second, before = changed_at.pop(key)
                    out.found.setdefault(before.value, []).append(tick + lag - second)
                    rows[key] = row._replace(
                        status=truth[key], status_changed_at=stamp, last_checked_at=stamp
                    )
                else:
                    rows[key] = row._replace(last_checked_at=stamp)
    out.wall_seconds = round(time.perf_counter() - started, 1)
    return out


FASTER_TIERS = CheckIntervalSettings(recent_seconds=300, pending_seconds=300)


def scenario_g(sizes: Any, work: Any = None) -> dict[str, Any]:
    """`sizes`: tests/bench/bench.py's Sizes (g_listings, g_per_connection, g_changes)."""
    listings, per_connection = sizes.g_listings, sizes.g_per_connection
    market = Market.make(listings, per_connection, sizes.g_changes, seed=7)
    strategies = {
        "uniform": None,
        "tiers_shipped": CheckIntervalSettings(),  # every live status at 15 minutes
        "tiers_5_minutes": FASTER_TIERS,
    }
    figures: dict[str, Any] = {
        "listings": listings,
        "per_connection": per_connection,
        "changes": len(market.changes),
    }
    for name, tiers in strategies.items():
        outcome = simulate(market, tiers)
        figures[name] = {
            "requests": outcome.requests,
            "listings_asked": outcome.asked,
            "wall_seconds": outcome.wall_seconds,
            "found_max_seconds": {
                before: round(max(waits)) for before, waits in sorted(outcome.found.items())
            },
            "found_mean_seconds": {
                before: round(sum(waits) / len(waits))
                for before, waits in sorted(outcome.found.items())
            },
            # Changes no check had found when the day ended (after its last cycle, or a closed
            # listing whose day had not come).
            "unfound_at_day_end": len(market.changes) - sum(len(w) for w in outcome.found.values()),
        }
    base = figures["uniform"]["requests"]
    for name in ("tiers_shipped", "tiers_5_minutes"):
        figures[name]["fewer_requests"] = round(base / figures[name]["requests"], 2)
    return figures
