"""The benchmark: how much a cycle costs, and how close it gets to the floors.

    .venv/bin/python -m tests.bench              # full sizes; writes docs/benchmarks.md
    .venv/bin/python -m tests.bench --smoke      # tiny sizes (the default test run does this)

The sandbox (MLS feeds and platforms) runs as a process of its own; every cycle runs in a
fresh process of its own too (tests/bench/cycle.py), so the daemon's CPU and peak RSS are its
own. Scenario A: 100,000 listings over 1,000 connections (each its own feed and credential),
1% changing per cycle, for each fetch strategy. Scenario B: a shared credential limited to
20 requests/s over 50 connections, against the floor requests/rate. Scenario C: 10,000 posts
taken down across the three platforms with per-platform limits, against its floor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from daemon.composition import open_runtime
from daemon.config import load_settings
from daemon.encryption import generate_key
from daemon.pace import MLS_RATE_MARGIN
from daemon.sandbox.standalone import SHARED_TOKEN, feed_key, feed_token
from daemon.specs import AccountSpec, ConnectionSpec, ListingSpec, PostSpec
from daemon.store import accounts, connections, listings, posts
from daemon.timestamps import iso, utcnow
from tests.bench import calibration, launch

PLATFORMS = ("facebook", "instagram", "linkedin")
STRATEGIES = ("naive", "by_key", "incremental")


@dataclass(frozen=True)
class Sizes:
    feeds: int = 1000
    per_feed: int = 100
    naive_feeds: int = 100  # naive is measured on a 10% sample: 100,000 requests take minutes
    b_feeds: int = 50
    b_per_feed: int = 200
    b_rate: float = 20.0
    c_posts: int = 10_000
    c_rate: float = 300.0
    d_events: int = 10_000  # listings moved (status changes) per cycle of scenario D
    # Measured cycles per strategy (A) and runs of scenario C: the median is reported. One
    # cycle on these shared 2-core machines varies by about 10% from run to run.
    repeats: int = 3
    # Scenario D's slowdown is the difference of two such figures, a few percent: more rounds.
    d_repeats: int = 7
    # Scenario J's rows: a ratio of two processes' CPU, each run's moved by its own
    # processor's slow spells: the median of more of them.
    j_repeats: int = 5
    # Scenario F: sales timed each way, and the polled ways' intervals (seconds).
    f_pushed: int = 30
    f_polled: int = 8
    f_cycled: int = 6
    f_poll_seconds: int = 10
    f_cycle_seconds: int = 20
    # Scenario G: a simulated day of check tiers against uniform 15-minute cycles.
    g_listings: int = 100_000
    g_per_connection: int = 100
    g_changes: int = 1500
    # Scenario H (`--only h`, about 17 minutes): sales a way, the log's poll, the cycle.
    h_changes: int = 1000
    h_poll_seconds: int = 60
    h_cycle_seconds: int = 900
    # Scenario I (`--only i`): the listings tracked at each size of the growth curve.
    i_listings: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    # Scenario L (`--only l`): the records of webhook deliveries in the history at each size.
    l_history: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    # Scenario K (`--only k`): scenario A's by_key and incremental on PostgreSQL beside SQLite.


SMOKE = Sizes(
    feeds=20,
    per_feed=50,
    naive_feeds=5,
    b_feeds=5,
    b_per_feed=100,
    b_rate=50.0,
    c_posts=300,
    c_rate=200.0,
    d_events=100,
    repeats=1,
    d_repeats=1,
    j_repeats=2,
    f_pushed=3,
    f_polled=1,
    f_cycled=1,
    f_poll_seconds=2,
    f_cycle_seconds=10,  # the shortest [sync] interval_seconds allowed
    g_listings=2000,
    g_changes=40,
    h_changes=20,
    h_poll_seconds=5,
    h_cycle_seconds=30,
    i_listings=(1000, 2000),
    l_history=(1000, 2000),
)


def median_run(runs: list[dict[str, Any]], ratios: bool = False) -> dict[str, Any]:
    """The run with the median wall time, with every run's wall time beside it; `ratios`:
    and every run's CPU over the sandbox server's for the same requests (`cpu_ratio`)."""
    ordered = sorted(runs, key=lambda r: float(r["wall_seconds"]))
    row = {**ordered[len(ordered) // 2], "wall_runs": [r["wall_seconds"] for r in runs]}
    if ratios:
        row["ratio_runs"] = [cpu_ratio(r) for r in runs]
    return row


@dataclass(frozen=True)
class Sandbox:
    mls: str
    platforms: str
    pid: int

    def usage(self) -> tuple[float, float]:
        """Its CPU so far and, of it, the kernel's part (system time), read together. If its
        CPU nears the wall time of a cycle, the sandbox, not the daemon, is what the cycle
        waits for."""
        user, system, _, _ = _stat_ticks(Path(f"/proc/{self.pid}/stat"))
        tick = os.sysconf("SC_CLK_TCK")
        return (user + system) / tick, system / tick

    def pin(self, cpu: int) -> None:
        """Runs it on processor `cpu` alone from now on, every thread of it (a thread it
        starts later takes its starter's)."""
        for thread in self._threads():
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.sched_setaffinity(thread, {cpu})

    def cpus(self) -> list[int]:
        """The processors its threads may run on, all of them together."""
        found: set[int] = set()
        for thread in self._threads():
            with contextlib.suppress(ProcessLookupError):
                found |= os.sched_getaffinity(thread)
        return sorted(found)

    def _threads(self) -> list[int]:
        return [int(t.name) for t in Path(f"/proc/{self.pid}/task").iterdir()]

    def spent_since(self, before: tuple[float, float]) -> dict[str, float]:
        """What it has spent since `usage` gave `before`, as a run's figures show it. The
        kernel's part is apart because a faster processor does not shrink it as it does
        the Python (docs/benchmarks.md, "the day's sixth session")."""
        cpu, kernel = self.usage()
        return {
            "sandbox_cpu_seconds": round(cpu - before[0], 3),
            "sandbox_kernel_seconds": round(kernel - before[1], 3),
        }


def cpu_ratio(run: dict[str, Any]) -> float:
    """A cycle's CPU over the sandbox server's CPU for the same requests, in the same run: a
    ratio, so it compares across machines of different speeds."""
    return round(float(run["cpu_seconds"]) / max(float(run["sandbox_cpu_seconds"]), 0.001), 3)


def cpu_over_sandbox(row: dict[str, Any]) -> float:
    """A row's `cpu_ratio`: the median of its runs' when it has several. Not the ratio of
    the run of median wall time: each processor of these machines runs a fixed loop
    slower for seconds at a time, each on its own, so one run's ratio moves with the
    processors the two sides ran on (docs/benchmarks.md "The ratio's noise")."""
    ratios = row.get("ratio_runs")
    return round(statistics.median(ratios), 3) if ratios else cpu_ratio(row)


def process_cpu_seconds(pid: int) -> float:
    """A process's user+system CPU so far (Linux)."""
    return cpu_seconds_in(Path(f"/proc/{pid}/stat"))


def cpu_seconds_in(stat: Path, reaped_children: bool = False) -> float:
    """User+system CPU so far from a /proc `stat` file (a process's or a thread's); with
    `reaped_children`, the CPU of its children that ended too (a server's finished workers)."""
    user, system, children_user, children_system = _stat_ticks(stat)
    ticks = user + system
    if reaped_children:
        ticks += children_user + children_system
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat_ticks(stat: Path) -> tuple[int, int, int, int]:
    """utime, stime, cutime, cstime of a /proc `stat` file, in clock ticks."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


@contextmanager
def sandbox(feeds: int, per_feed: int) -> Iterator[Sandbox]:
    out_r, out_w = os.pipe()
    args = ["--feeds", str(feeds), "--listings-per-feed", str(per_feed)]
    # Open until the server ends: it may write more after its first line.
    with os.fdopen(out_r) as out:
        # Its stderr is the benchmark's.
        stdio = (launch.devnull(), out_w, os.dup(2))
        proc = launch.started("daemon.sandbox.standalone", args, dict(os.environ), stdio)
        try:
            urls = json.loads(out.readline())
            yield Sandbox(urls["mls"], urls["platforms"], proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)


def write_config(folder: Path, platforms_url: str, **sections: dict[str, Any]) -> Path:
    body: dict[str, dict[str, Any]] = {
        "database": {"path": "bench.db"},
        "sync": {"max_concurrent_connections": 200},
        "mls": {"max_concurrent_requests": 8, "backoff_initial_seconds": 0.05},
        "platforms": {
            "graph_url": f"{platforms_url}/graph",
            "linkedin_api_url": f"{platforms_url}/linkedin",
            "linkedin_oauth_url": f"{platforms_url}/linkedin",
        },
        "logging": {"level": "info"},  # as shipped
        # Each scheduled cycle asks for every listing: the figures are of whole cycles (the
        # tiers have their own request-cost scenario).
        "check_intervals": {"enabled": False},
    }
    for name, values in sections.items():
        body[name] = {**body.get(name, {}), **values}
    lines = []
    for name, values in body.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _prepare(
    config: Path,
    key: str,
    mls_url: str,
    feeds: int,
    per_feed: int,
    connection: dict[str, Any],
    shared: bool,
    status: str | None,
) -> None:
    async with open_runtime(load_settings(config, {}), {"MLS_SYNC_SECRET_KEY": key}) as rt:
        box, now = rt.require_box(), iso(utcnow())
        for n in range(feeds):
            spec = ConnectionSpec.model_validate(
                {
                    "id": f"c{n}",
                    "name": f"feed {n}",
                    "base_url": f"{mls_url}/feed/{n}",
                    **connection,
                }
            )
            token = SHARED_TOKEN if shared else feed_token(n)
            await connections.upsert(rt.db, spec, box.encrypt(token), now)
            await listings.add_many(
                rt.db,
                [
                    ListingSpec(
                        id=f"L-{feed_key(n, i)}",
                        connection_id=f"c{n}",
                        listing_key=feed_key(n, i),
                        status=status,
                    )
                    for i in range(per_feed)
                ],
                now,
            )


def prepare(
    config: Path,
    key: str,
    mls_url: str,
    feeds: int,
    per_feed: int,
    shared: bool = False,
    status: str | None = None,
    **connection: Any,
) -> None:
    anyio.run(_prepare, config, key, mls_url, feeds, per_feed, connection, shared, status)


def cycle(
    config: Path,
    key: str,
    server: Sandbox,
    unpublish_only: bool = False,
    deliver: bool = False,
    engine: str | None = None,
    database_cpu: Callable[[], float] | None = None,
    cpu: int | None = None,
    tree: Path | None = None,
) -> dict[str, Any]:
    """One cycle in a process of its own; adds the sandbox's CPU during it. `deliver`: with
    the webhook worker beside it (tests/bench/deliveries.py). `engine`: the HTTP engine under
    httpx (tests/bench/cycle.py's --engine). `database_cpu`: a database server's CPU so far
    (tests/bench/postgresql.py), added as the CPU it spent during the cycle. `cpu`: the
    process runs on that processor alone. `tree`: the checkout whose code it runs
    (`launch.finished`), else this one."""
    before = server.usage()
    database_before = database_cpu() if database_cpu else 0.0
    figures = _cycle_process(config, key, unpublish_only, deliver, engine, cpu, tree)
    figures.update(server.spent_since(before))
    if database_cpu:
        figures["database_cpu_seconds"] = round(database_cpu() - database_before, 3)
    return figures


# The slot of the clock's cycles that several daemons share (the shortest interval allowed).
SHARED_SLOT_SECONDS = 10
START_UP_SECONDS = 4.0  # a cycle process's imports and its database opened


def cycles_together(
    config: Path,
    key: str,
    server: Sandbox,
    daemons: int,
    database_cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The clock's cycle of one slot, run by `daemons` processes on one database at once,
    which share its connections: the longest wall time, every process's CPU and requests."""
    before = server.usage()
    database_before = database_cpu() if database_cpu else 0.0
    # One start for all, the first slot far enough ahead for every process to be up by then.
    start = (time.time() // SHARED_SLOT_SECONDS + 1) * SHARED_SLOT_SECONDS
    if start - time.time() < START_UP_SECONDS:
        start += SHARED_SLOT_SECONDS
    args = [*cycle_args(config), "--at", str(start)]
    env = {**os.environ, "MLS_SYNC_SECRET_KEY": key}
    each = []
    with ExitStack() as stack:
        # Their output and logs to files: a pipe read only after another process ends would
        # fill, and stall the process writing to it mid-cycle.
        outs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(daemons)]
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(daemons)]
        processes = [
            launch.started(
                CYCLE, args, env, (launch.devnull(), os.dup(out.fileno()), os.dup(log.fileno()))
            )
            for out, log in zip(outs, logs, strict=True)
        ]
        for process, out, log in zip(processes, outs, logs, strict=True):
            if process.wait() != 0:
                log.seek(0)
                last = "\n".join(log.read().decode(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"a cycle process exited {process.returncode}:\n{last}")
            out.seek(0)
            lines = out.read().decode().splitlines()
            each.append(json.loads([ln for ln in lines if ln.startswith("{")][-1]))
    summed = ("mls_requests", "listings_checked", "status_changes", "posts_unpublished", "errors")
    figures: dict[str, Any] = {
        "wall_seconds": max(e["wall_seconds"] for e in each),
        "cpu_seconds": round(sum(e["cpu_seconds"] for e in each), 3),
        "peak_rss_mb": max(e["peak_rss_mb"] for e in each),
        **{name: sum(e[name] for e in each) for name in summed},
        "checked_by_each": [e["listings_checked"] for e in each],
        **server.spent_since(before),
    }
    if database_cpu:
        figures["database_cpu_seconds"] = round(database_cpu() - database_before, 3)
    return figures


CYCLE = "tests.bench.cycle"


def cycle_args(config: Path) -> list[str]:
    return ["--config", str(config)]


def _cycle_process(
    config: Path,
    key: str,
    unpublish_only: bool,
    deliver: bool,
    engine: str | None,
    cpu: int | None = None,
    tree: Path | None = None,
) -> dict[str, Any]:
    args = cycle_args(config)
    if engine:
        args += ["--engine", engine]
    if unpublish_only:
        args.append("--unpublish-only")
    if deliver:
        args.append("--deliver")
    return measured_process(CYCLE, args, config, key, tree, cpu)


def measured_process(
    module: str,
    args: list[str],
    config: Path,
    key: str,
    tree: Path | None = None,
    cpu: int | None = None,
) -> dict[str, Any]:
    """A measuring module of tests/bench run in a process of its own on `config`'s database,
    with the secret key `key` (tests/bench/launch.py): the figures it printed, as one JSON
    line. `tree`: the checkout whose code it runs (`launch.finished`); `cpu`: the one
    processor it runs on (through `taskset`, which any version of the module runs under)."""
    env = {**os.environ, "MLS_SYNC_SECRET_KEY": key}  # a key may start with "-": not in argv
    profile = os.environ.get("MLS_SYNC_BENCH_PROFILE")  # a folder: py-spy stacks per cycle
    if profile:
        out_file = Path(profile) / f"{config.parent.name}-{len(list(Path(profile).iterdir()))}.txt"
        # More of py-spy's options, e.g. "--gil": only samples holding the interpreter, so a
        # thread waiting on a queue is not counted as busy.
        options = shlex.split(os.environ.get("MLS_SYNC_BENCH_PYSPY", ""))
        spy = ["py-spy", "record", *options, "-r", "250", "-f", "raw", "-o", str(out_file), "--"]
    else:
        spy = []
    pinned = [] if cpu is None else ["taskset", "--cpu-list", str(cpu)]
    out = launch.finished(module, args, env, prefix=[*spy, *pinned], tree=tree)
    figures = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return dict(json.loads(figures[-1]))  # py-spy, when profiling, prints after it


def own_cpu_seconds() -> float:
    """This process's user+system CPU so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_kernel_seconds() -> float:
    """The system part of this process's CPU so far (see `Sandbox.spent_since`)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def move(mls_url: str, count: int, to: str = "Closed") -> list[str]:
    """Sets `count` listings not at `to` to it: `count` changes."""
    answer = httpx.post(f"{mls_url}/admin/move", json={"count": count, "to": to}, timeout=60)
    return list(answer.json()["moved"])


# -- scenarios ---------------------------------------------------------------------------------


def scenario_a(
    sizes: Sizes, work: Path, strategies: frozenset[str] = frozenset(STRATEGIES)
) -> list[dict[str, Any]]:
    rows = []
    plans: list[tuple[str, int, dict[str, Any]]] = [
        (
            "naive (one request per listing)",
            sizes.naive_feeds,
            {"key_filter": "each", "rate_per_second": 1000.0},
        ),
        ("by_key, batches of 50", sizes.feeds, {"key_filter": "in", "batch_size": 50}),
        ("incremental", sizes.feeds, {"mode": "incremental", "overlap_seconds": 0}),
    ]
    for name, feeds, connection in plans:
        if name.split(" ")[0].rstrip(",") not in strategies:
            continue
        rows.append({"strategy": name, **strategy_cycles(feeds, sizes, work, connection)})
    return rows


def strategy_cycles(
    feeds: int,
    sizes: Sizes,
    work: Path,
    connection: dict[str, Any],
    engine: str | None = None,
    database: tuple[str, Callable[[], float]] | None = None,
    daemons: int = 1,
    one_cpu: bool = False,
) -> dict[str, Any]:
    """`feeds` connections of `sizes.per_feed` listings fetched as `connection` says: a first
    cycle, then `sizes.repeats` measured ones, each after 1% of the listings moved; the run of
    median wall time, with the minimum requests it could have taken. `engine`: the HTTP
    engine (tests/bench/engines.py), else the shipped one. `database`: a PostgreSQL URL
    and its server's CPU meter, else the SQLite file. `daemons`: more than one, each
    measured cycle is the clock's, run by that many processes at once, which share it.
    `one_cpu`: the measured cycles and the sandbox server run on one processor, the same
    one, which takes the two processors' separate slow spells out of their ratio
    (docs/benchmarks.md "The ratio's noise")."""
    if one_cpu and daemons > 1:
        raise ValueError("several daemons' cycles are not run on one processor")
    listings_n = feeds * sizes.per_feed
    url, database_cpu = database if database else ("", None)
    shared: dict[str, Any] = {"interval_seconds": SHARED_SLOT_SECONDS, "jitter_seconds": 0}
    sections: dict[str, dict[str, Any]] = {
        "database": {"url": url},
        "sync": shared if daemons > 1 else {},
    }
    with prepared(feeds, sizes.per_feed, work, connection, sections) as (server, config, key):
        cpu = pinned_to_one(server) if one_cpu else None
        runs = []
        for _ in range(sizes.repeats):
            moved = move(server.mls, listings_n // 100)
            if daemons > 1:
                result = cycles_together(config, key, server, daemons, database_cpu)
            else:
                result = cycle(
                    config, key, server, engine=engine, database_cpu=database_cpu, cpu=cpu
                )
                result["sandbox_cpus"] = server.cpus()
            per_feed_changes = Counter(k.split("-")[0] for k in moved)
            if "mode" in connection:
                minimum = sum(math.ceil(c / 200) for c in per_feed_changes.values()) + feeds
            elif connection["key_filter"] == "each":
                minimum = listings_n
            else:
                minimum = feeds * math.ceil(sizes.per_feed / 50)
            runs.append(
                {
                    "minimum_requests": minimum,
                    "ratio_to_minimum": round(result["mls_requests"] / minimum, 3),
                    **result,
                }
            )
    return {"listings": listings_n, "connections": feeds, **median_run(runs, ratios=True)}


@contextmanager
def prepared(
    feeds: int,
    per_feed: int,
    work: Path,
    connection: dict[str, Any],
    sections: dict[str, dict[str, Any]] | None = None,
    first_cycle: bool = True,
) -> Iterator[tuple[Sandbox, Path, str]]:
    """A sandbox server of `feeds` feeds of `per_feed` listings, and a database in a new
    folder of `work` (its config written with `sections` over the defaults) tracking them
    all, each connection fetched as `connection` says; with `first_cycle`, after a first
    cycle: every listing first seen (and a cursor). Yields the server, the config's path
    and the secret key."""
    with sandbox(feeds, per_feed) as server:
        key = generate_key()
        folder = Path(tempfile.mkdtemp(dir=work))
        config = write_config(folder, server.platforms, **(sections or {}))
        prepare(config, key, server.mls, feeds, per_feed, **connection)
        if first_cycle:
            cycle(config, key, server)
        yield server, config, key


def pinned_to_one(server: Sandbox) -> int:
    """Pins the sandbox server to the first processor this process may run on, and returns
    it: for cycles measured on it too, which takes the two processors' separate slow
    spells out of their ratio (docs/benchmarks.md "The ratio's noise")."""
    cpu = min(os.sched_getaffinity(0))
    server.pin(cpu)
    return cpu


def scenario_b(sizes: Sizes, work: Path) -> dict[str, Any]:
    with sandbox(sizes.b_feeds, sizes.b_per_feed) as server:
        folder = Path(tempfile.mkdtemp(dir=work))
        key = generate_key()
        config = write_config(folder, server.platforms)
        prepare(
            config,
            key,
            server.mls,
            sizes.b_feeds,
            sizes.b_per_feed,
            shared=True,
            key_filter="in",
            batch_size=50,
            rate_per_second=sizes.b_rate,
        )
        result = cycle(config, key, server)
    # The limiter lets the first request through at once, then one every 1/rate seconds.
    floor = (result["mls_requests"] - 1) / sizes.b_rate
    return {
        "connections": sizes.b_feeds,
        "rate_per_second": sizes.b_rate,
        "floor_seconds": round(floor, 2),
        "wall_over_floor": round(result["wall_seconds"] / floor, 3),
        "paced_floor_seconds": round(floor / (1 - MLS_RATE_MARGIN), 2),
        **result,
    }


async def _posts(config: Path, key: str, platforms_url: str, count: int) -> dict[str, int]:
    published, per_platform = [], Counter[str]()
    async with open_runtime(load_settings(config, {}), {"MLS_SYNC_SECRET_KEY": key}) as rt:
        box, now = rt.require_box(), iso(utcnow())
        for platform_name in PLATFORMS:
            for a in range(10):
                spec = AccountSpec.model_validate(
                    {
                        "id": f"{platform_name}-{a}",
                        "user_id": f"agent-{a}",
                        "platform": platform_name,
                        "connected_via": "facebook_login" if platform_name == "instagram" else None,
                    }
                )
                await accounts.upsert(
                    rt.db, spec, box.encrypt(f"{platform_name}-{a}-token"), None, None, now
                )
        for i in range(count):
            platform_name = PLATFORMS[i % 3]
            account = f"{platform_name}-{(i // 3) % 10}"
            post_id = {
                "facebook": f"1000_{i}",
                "instagram": f"{17_000_000 + i}",
                "linkedin": f"urn:li:share:{i}",
            }[platform_name]
            feed, n = divmod(i, 1000)
            await posts.add(
                rt.db,
                PostSpec(
                    id=f"p{i}",
                    listing_id=f"L-{feed_key(feed, n)}",
                    account_id=account,
                    platform_post_id=post_id,
                ),
                now,
            )
            published.append(
                {"platform": platform_name, "id": post_id, "token": f"{account}-token"}
            )
            per_platform[platform_name] += 1
    async with httpx.AsyncClient(timeout=60) as client:
        await client.post(f"{platforms_url}/admin/publish", json=published)
    return dict(per_platform)


def scenario_c(sizes: Sizes, work: Path) -> dict[str, Any]:
    return median_run([_scenario_c_once(sizes, work) for _ in range(sizes.repeats)])


def _scenario_c_once(sizes: Sizes, work: Path) -> dict[str, Any]:
    feeds = math.ceil(sizes.c_posts / 1000)
    per_feed = min(1000, sizes.c_posts)
    with sandbox(feeds, per_feed) as server:
        folder = Path(tempfile.mkdtemp(dir=work))
        key = generate_key()
        rate = sizes.c_rate
        config = write_config(
            folder,
            server.platforms,
            platforms={
                "facebook_rate_per_second": rate,
                "instagram_rate_per_second": rate,
                "linkedin_rate_per_second": rate,
                "max_concurrent_per_account": 16,
            },
        )
        prepare(config, key, server.mls, feeds, per_feed, status="sold")
        per_platform = anyio.run(_posts, config, key, server.platforms, sizes.c_posts)
        result = cycle(config, key, server, unpublish_only=True)
        stats = httpx.get(f"{server.platforms}/admin/stats", timeout=10).json()
    floor = (max(per_platform.values()) - 1) / rate
    return {
        "posts": sizes.c_posts,
        "rate_per_platform": rate,
        "floor_seconds": round(floor, 2),
        "wall_over_floor": round(result["wall_seconds"] / floor, 3),
        "successful_deletes": stats["successful_deletes"],
        "posts_deleted_twice": stats["posts_deleted_twice"],
        **result,
    }


# -- report ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}"
    )


def markdown_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    """The lines of a Markdown table: a header of `columns`, then one line per row."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def walls_shown(r: dict[str, Any]) -> str:
    """The median run's wall time, with every run's beside it."""
    return f"{r['wall_seconds']} ({', '.join(str(w) for w in r['wall_runs'])})"


def ratios_shown(r: dict[str, Any]) -> str:
    """The median of the runs' CPU over the sandbox's (`cpu_over_sandbox`), and their range."""
    ratios = r["ratio_runs"]
    return f"{cpu_over_sandbox(r)} ({min(ratios)}-{max(ratios)})"


def conditions(workload: float, steal: float | None) -> str:
    stolen = "unknown" if steal is None else f"{steal:.1%}"
    return (
        f"Machine: {machine()}; its speed: the fixed workload of tests/bench/calibration.py in "
        f"{workload} s (0.23-0.27 s on the faster machines seen; lower is faster), CPU stolen "
        f"by the hypervisor during the run: {stolen}"
    )


def render(
    a: list[dict[str, Any]],
    b: dict[str, Any],
    c: dict[str, Any],
    d: dict[str, Any],
    e: dict[str, Any],
    f: dict[str, Any],
    command: str,
    where: str,
) -> str:
    columns = [
        "strategy",
        "listings",
        "MLS requests",
        "minimum",
        "ratio",
        "wall s: median (runs)",
        "daemon CPU s",
        "of it, event loop",
        "peak RSS MB",
        "sandbox CPU s",
        "changes applied",
    ]
    lines = markdown_table(
        columns,
        [
            [
                r["strategy"],
                f"{r['listings']:,}",
                f"{r['mls_requests']:,}",
                f"{r['minimum_requests']:,}",
                r["ratio_to_minimum"],
                walls_shown(r),
                r["cpu_seconds"],
                r["loop_thread_cpu_seconds"],
                r["peak_rss_mb"],
                r["sandbox_cpu_seconds"],
                f"{r['status_changes']:,}",
            ]
            for r in a
        ],
    )
    lines += [
        "",
        f"Scenario B (one credential shared by {b['connections']} connections, "
        f"{b['rate_per_second']:g} requests/s): {b['mls_requests']} requests in "
        f"{b['wall_seconds']} s against a floor of {b['floor_seconds']} s "
        f"(wall/floor {b['wall_over_floor']}, target <= {round(1.05 * b['floor_seconds'] + 1, 2)}"
        f" s; {b['paced_floor_seconds']} s at the pace the daemon keeps, "
        f"{MLS_RATE_MARGIN:.0%} under the rate); "
        f"CPU {b['cpu_seconds']} s.",
        "",
        f"Scenario C ({c['posts']:,} posts, {c['rate_per_platform']:g} deletes/s per platform): "
        f"{c['successful_deletes']:,} deleted in {walls_shown(c)} s against a floor of "
        f"{c['floor_seconds']} s (wall/floor {c['wall_over_floor']}, target <= "
        f"{round(1.05 * c['floor_seconds'] + 1, 2)} s); posts deleted twice: "
        f"{c['posts_deleted_twice']}; CPU {c['cpu_seconds']} s (event loop "
        f"{c['loop_thread_cpu_seconds']} s), peak RSS {c['peak_rss_mb']} MB; sandbox CPU "
        f"{c['sandbox_cpu_seconds']} s.",
        "",
        render_d(d),
        "",
        f"Scenario E (the status page's overview, /ui, of {e['connections']:,} connections "
        f"and {e['listings']:,} listings, from `mls-sync run`, {e['requests']} requests one "
        f"at a time): p50 {e['p50_ms']} ms, p95 {e['p95_ms']} ms, max {e['max_ms']} ms "
        f"(target < 200 ms); {e['page_kb']} KB a page.",
        "",
        render_f(f),
        "",
        f"{where}. Command: `{command}`.",
    ]
    return "\n".join(lines)


def render_d(d: dict[str, Any]) -> str:
    hooked, base = d["with"], d["without"]
    p99s = sorted(hooked["lag_p99_runs"])
    under = sum(1 for x in p99s if x < 1.0)
    return (
        f"Scenario D (webhooks: {d['moved']:,} of {d['listings']:,} listings moved before a "
        f"by_key cycle, each change an event delivered to a receiver that verifies every "
        f"signature): {hooked['events']:,} events a round. Lag from commit to arrival, p99 of "
        f"each round: {', '.join(str(x) for x in hooked['lag_p99_runs'])} s (median "
        f"{p99s[len(p99s) // 2]} s, worst {p99s[-1]} s; {under} of {len(p99s)} rounds under "
        f"the 1 s target). In the round of median wall time: p50 {hooked['lag_p50_seconds']} "
        f"s, p99 {hooked['lag_p99_seconds']} s, max {hooked['lag_max_seconds']} s; the last "
        f"event arrived {hooked['drain_seconds']} s after the cycle ended. Cycle wall "
        f"{walls_shown(hooked)} s with deliveries against {walls_shown(base)} s without "
        f"(slowdown of the medians {d['slowdown']:.1%}; the rounds without deliveries alone span "
        f"{_spread(base['wall_runs']):.0%}); cycle CPU {hooked['cpu_seconds']} s against "
        f"{base['cpu_seconds']} s, the delivery process's {hooked['delivery_cpu_seconds']} s "
        f"and the receiver's {hooked['receiver_cpu_seconds']} s (their processes, on the same "
        f"two cores); duplicates {hooked['duplicates']}, out of order "
        f"{hooked['out_of_order']}, signatures that did not verify {hooked['unverified']}."
    )


def render_f(f: dict[str, Any]) -> str:
    pushed, polled, cycled = f["pushed"], f["polled"], f["cycled"]

    def way(row: dict[str, Any]) -> str:
        c, d = row["commit"], row["delete"]
        return (
            f"{row['sales']} sales: sold in the daemon p50 {c['p50']} s, p95 {c['p95']} s, max "
            f"{c['max']} s; post DELETEd p50 {d['p50']} s, p95 {d['p95']} s, max {d['max']} s"
        )

    return (
        "Scenario F (a sale in the MLS to the listing sold in `mls-sync run` and its Facebook "
        "post's DELETE at the platform, one sale at a time): pushed by the MLS (RCP-28), "
        f"{way(pushed)} (targets p95 < 2 s and < 3 s). Found by the poll of the change log "
        f"every {polled['interval_seconds']} s, {way(polled)}. Found by the next by_key cycle "
        f"every {cycled['interval_seconds']} s, {way(cycled)}. A polled way waits for its next "
        "read, anywhere from 0 to its whole interval: at 60 s and 15 minutes its figures grow "
        "with the interval, and push's do not."
    )


def render_g(g: dict[str, Any]) -> str:
    uniform, same, faster = g["uniform"], g["tiers_shipped"], g["tiers_5_minutes"]

    def found(row: dict[str, Any]) -> str:
        worst = row["found_max_seconds"]
        return ", ".join(f"{status} {seconds} s" for status, seconds in worst.items())

    return (
        f"Scenario G (check tiers, a simulated day: {g['listings']:,} listings on connections "
        f"of {g['per_connection']}, 60% sold or off_market, {g['changes']:,} status changes): "
        f"MLS requests in the day, uniform 15-minute cycles {uniform['requests']:,}; the "
        f"shipped tiers (every live status at 15 minutes, closed daily) {same['requests']:,} "
        f"({same['fewer_requests']}x fewer); with pending, coming_soon and recent at 5 "
        f"minutes {faster['requests']:,} ({faster['fewer_requests']}x). Longest wait from a "
        f"change to the check that found it, by the status it left: uniform {found(uniform)}; "
        f"shipped tiers {found(same)}; 5-minute tiers {found(faster)}."
    )


def _spread(walls: list[float]) -> float:
    return max(walls) / min(walls) - 1


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds not minutes")
    parser.add_argument("--write-docs", type=Path, help="write the results table here")
    parser.add_argument(
        "--only",
        choices=["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"],
        help="run one scenario and print its figures as JSON (for checking a fix)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        action="append",
        help="with --only a: run this fetch strategy (repeat for several; default all)",
    )
    args = parser.parse_args(argv)
    with launch.forking(args.smoke):
        return _scenarios(args)


def _scenarios(args: argparse.Namespace) -> dict[str, Any]:
    sizes = SMOKE if args.smoke else Sizes()
    # Here, not at the top: scenarios D's and E's modules build on this one's helpers.
    from tests.bench.deliveries import scenario_d
    from tests.bench.detection import scenario_f
    from tests.bench.detection_at_scale import scenario_h
    from tests.bench.engines import render_j, scenario_j
    from tests.bench.growth import render_i, scenario_i
    from tests.bench.postgresql import render_k, scenario_k
    from tests.bench.pruning import render_l, scenario_l
    from tests.bench.request_cost import scenario_g
    from tests.bench.status_page import scenario_e

    if args.only:
        with tempfile.TemporaryDirectory(prefix="mls-sync-bench-") as work:
            if args.only == "a":
                chosen = frozenset(args.strategy or STRATEGIES)
                figures: Any = scenario_a(sizes, Path(work), chosen)
            else:
                scenario = {
                    "b": scenario_b,
                    "c": scenario_c,
                    "d": scenario_d,
                    "e": scenario_e,
                    "f": scenario_f,
                    "g": scenario_g,
                    "h": scenario_h,
                    "i": scenario_i,
                    "j": scenario_j,
                    "k": scenario_k,
                    "l": scenario_l,
                }[args.only]
                figures = scenario(sizes, Path(work))
        print(json.dumps(figures, indent=1))
        if args.only in ("i", "j", "k", "l"):
            renders = {"i": render_i, "j": render_j, "k": render_k, "l": render_l}
            print(renders[args.only](figures))
        return {args.only: figures}
    workload, steal = calibration.workload_seconds(), calibration.StealMeter()
    with tempfile.TemporaryDirectory(prefix="mls-sync-bench-") as work:
        a = scenario_a(sizes, Path(work))
        b = scenario_b(sizes, Path(work))
        c = scenario_c(sizes, Path(work))
        d = scenario_d(sizes, Path(work))
        e = scenario_e(sizes, Path(work))
        f = scenario_f(sizes, Path(work))
        g = scenario_g(sizes)
    command = ".venv/bin/python -m tests.bench" + (" --smoke" if args.smoke else "")
    table = render(a, b, c, d, e, f, command, conditions(workload, steal.share()))
    table += "\n\n" + render_g(g)
    print(table)
    if args.write_docs:
        args.write_docs.write_text(
            args.write_docs.read_text().split("<!-- results -->")[0]
            + "<!-- results -->\n"
            + table
            + "\n"
        )
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "g": g}


if __name__ == "__main__":
    main(sys.argv[1:])
