"""High availability (docs/postgresql.md "Several daemons"): three daemons share one
PostgreSQL database; round after round, statuses flip at the MLS and the daemon syncing a
connection in the slot's cycle is killed with SIGKILL. The others finish its work: every
listing is in step with the MLS within one lease time of the kill, no change is lost, no post
is sent a second DELETE, and no connection is synced twice by the clock in one slot.

What the two tests share: test_high_availability_one_host.py (a dead holder is seen at once,
by its pid) and test_high_availability_separate_vms.py (each daemon under a host name of its
own, in a UTS namespace: the others can only wait for its leases to expire, as on separate
machines). Each prints one line of figures (docs/reliability.md records them).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import anyio

from daemon.composition import Runtime
from daemon.models import StatusMapping
from daemon.sandbox.demo import check_consistency
from daemon.store import listings, meta
from daemon.sync import process_lease
from daemon.sync.cycle_slots import SHARED_TRIGGERS, catch_up_seconds, slot_start
from daemon.timestamps import iso, parse_iso, utcnow
from tests import helpers
from tests.e2e.daemon_process import Daemon, DaemonConfig
from tests.helpers import Mls, Platforms, add_account, add_connection, add_post, track
from tests.postgres_server import PostgresServer

DAEMONS = 3
CONNECTIONS = 6
PER_CONNECTION = 40
INTERVAL = 10  # the shortest [sync] interval_seconds
LEASE = 30  # the shortest [sync] lease_seconds
STATUSES = ["Active", "Active Under Contract", "Pending", "Closed", "Withdrawn", "Coming Soon"]
PLATFORMS = {"facebook": "1000_{n}", "instagram": "17{n:06d}", "linkedin": "urn:li:share:{n}"}


@dataclass
class Cluster:
    """The daemons, one per config (one per "VM"), and every log any of them wrote."""

    configs: list[DaemonConfig]
    password: str
    apart: bool  # each daemon under a host name of its own
    daemons: list[Daemon] = field(default_factory=list)

    def start(self, n: int) -> Daemon:
        prefix = _on_a_host_of_its_own(f"vm-{n + 1}") if self.apart else ()
        daemon = self.configs[n].start(
            env={"MLS_SYNC_DATABASE_PASSWORD": self.password}, prefix=prefix
        )
        if n < len(self.daemons):
            self.daemons[n] = daemon
        else:
            self.daemons.append(daemon)
        return daemon

    def by_pid(self, pid: int) -> int | None:
        return next((n for n, d in enumerate(self.daemons) if d.proc.pid == pid), None)

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for config in self.configs:
            for path in sorted(config.path.parent.glob("daemon-*.log")):
                for line in path.read_text(errors="replace").splitlines():
                    if line.startswith("{"):
                        lines.append(json.loads(line))
        return lines


def _on_a_host_of_its_own(name: str) -> tuple[str, ...]:
    """A command prefix: the daemon in a UTS namespace of its own, under host name `name`
    (its holder names read `name:pid`, which no other daemon can look up)."""
    # As root, a UTS namespace alone; otherwise inside a user namespace of its own, where
    # the daemon may set its host name (Debian allows unprivileged user namespaces).
    own = ("--uts",) if os.geteuid() == 0 else ("--user", "--map-root-user", "--uts")
    return ("unshare", *own, "sh", "-c", 'hostname "$0" && exec "$@"', name)


@dataclass
class Figures:
    kills: int = 0
    mid_cycle: int = 0
    seconds_to_in_step: list[float] = field(default_factory=list)
    runs_ended_after: float | None = None  # a VM gone for good: when its runs were ended


async def run_rounds(
    tmp_path: Path,
    secret_key: str,
    mls: Mls,
    platforms: Platforms,
    server: PostgresServer,
    rounds: int,
    apart: bool,
) -> None:
    sandbox = mls[0]
    state = platforms[0]
    rng = random.Random(20261130 + apart)
    url = helpers.postgresql_url
    assert url is not None
    configs = []
    for n in range(DAEMONS):
        folder = tmp_path / f"vm-{n + 1}"
        folder.mkdir()
        config = DaemonConfig.write(folder, platforms[1], secret_key, interval=INTERVAL)
        config.add("database", url=url)
        config.add("sync", lease_seconds=LEASE, max_concurrent_connections=2)
        configs.append(config)
    keys = await _seed(configs[0], mls, platforms)
    cluster = Cluster(configs, server.password, apart)
    figures = Figures()
    # A kill is known at once on this host, and the work is taken at the next look for it;
    # on another "VM", once the process lease runs out. With 10 s for the sync and the
    # test's own looks on a loaded machine; both within one lease time.
    look = catch_up_seconds(INTERVAL, LEASE)
    limit = 10.0 + look + (process_lease.term_seconds(LEASE) if apart else 0)
    assert limit <= LEASE
    try:
        for n in range(DAEMONS):
            cluster.start(n)
        for daemon in cluster.daemons:
            await daemon.wait_notify("READY=1", timeout=60)
        last_start = utcnow()
        async with configs[0].runtime() as rt:
            offset = int(await meta.get(rt.db, meta.SLOT_OFFSET) or 0)
            await _until_in_step(rt, mls, platforms, limit=60)
            assert len(await _live_processes(rt)) == DAEMONS  # each keeps its process lease
            for n in range(rounds + apart):
                await _until_each_renewed_since(rt, last_start)
                await _until_no_lease_held(rt)
                for key in rng.sample(keys, len(keys) // 20):
                    sandbox.set_status(key, rng.choice(STATUSES))
                next_slot = slot_start(utcnow(), INTERVAL, offset) + timedelta(seconds=INTERVAL)
                await anyio.sleep((next_slot - utcnow()).total_seconds())
                victim, next_slot = await _a_daemon_syncing(rt, cluster, rng, offset)
                cluster.daemons[victim].send(signal.SIGKILL)
                killed_at = time.monotonic()
                await cluster.daemons[victim].wait_exit(timeout=10)
                figures.kills += 1
                figures.mid_cycle += await _left_a_lease(rt, cluster.daemons[victim].proc.pid)
                # The slot's work done (every connection synced in it) and all in step.
                with anyio.fail_after(limit):
                    await _until_synced_since(rt, next_slot)
                    await _until_in_step(rt, mls, platforms, limit)
                figures.seconds_to_in_step.append(time.monotonic() - killed_at)
                if n < rounds:
                    await cluster.start(victim).wait_notify("READY=1", timeout=60)
                    last_start = utcnow()
                else:  # a VM that does not come back: the others end the run it left
                    await _until_runs_ended(rt, cluster.daemons[victim].proc.pid)
                    figures.runs_ended_after = time.monotonic() - killed_at
            broken = await _broken_trails(rt)
            row = await rt.db.fetch_one(
                "SELECT count(*) FROM sync_runs WHERE outcome = 'interrupted'", ()
            )
            interrupted = int(row[0]) if row else 0
    finally:
        cluster.stop()

    twice = [p for p, n in state.successful_deletes.items() if n > 1]
    repeats = sum(state.repeated_deletes.values())
    clock_syncs = _clock_syncs(cluster.log_lines(), offset)
    duplicates = {key: n for key, n in clock_syncs.items() if n > 1}
    spans = figures.seconds_to_in_step
    print(
        f"\nhigh availability ({'separate VMs' if apart else 'one host'}): {DAEMONS} daemons, "
        f"{figures.kills} SIGKILLs ({figures.mid_cycle} holding a lease), "
        f"{len(keys)} listings on {CONNECTIONS} connections, lease {LEASE} s, interval "
        f"{INTERVAL} s; seconds from the kill to the slot done and all in step: median "
        f"{statistics.median(spans):.1f}, max {max(spans):.1f}; posts deleted "
        f"{len(state.successful_deletes)}, twice {len(twice)}, repeated DELETEs {repeats}; "
        f"broken audit trails {len(broken)}; connections synced by the clock "
        f"{clock_syncs.total()}, twice in one slot {len(duplicates)}; "
        f"runs interrupted {interrupted}{_gone_for_good(figures)}"
    )
    assert max(spans) <= limit
    assert twice == [] and repeats == 0, state.repeated_deletes
    assert broken == []
    assert duplicates == {}, duplicates
    # The logs were read: every connection's clock syncs are in them. (Their number is not a
    # fixed multiple of the rounds: how many slots a round spans depends on the machine.)
    assert len({connection for connection, _slot in clock_syncs}) == CONNECTIONS
    assert figures.mid_cycle == figures.kills  # each kill left work behind for the others


def _gone_for_good(figures: Figures) -> str:
    if figures.runs_ended_after is None:
        return ""
    return f"; a VM gone for good: its run ended {figures.runs_ended_after:.1f} s after the kill"


async def _seed(config: DaemonConfig, mls: Mls, platforms: Platforms) -> list[str]:
    """CONNECTIONS connections to the sandbox MLS, each with a credential of its own (its own
    rate limit), PER_CONNECTION listings each, and a post on each platform for a third of
    the listings."""
    sandbox, url = mls
    state = platforms[0]
    keys = []
    async with config.runtime() as rt:
        for platform in PLATFORMS:
            via = "facebook_login" if platform == "instagram" else None
            await add_account(rt, f"acct-{platform}", platform, f"{platform}-token", via)
        for c in range(CONNECTIONS):
            token = f"ha-token-{c}-0123456789abcdef"
            sandbox.static_tokens.add(token)
            mine = [f"H{c}{n:03d}" for n in range(PER_CONNECTION)]
            for key in mine:
                sandbox.put(key, "Active")
            await add_connection(
                rt, url, f"mls-{c}", secret=token, rate_per_second=4.0, batch_size=8
            )
            await track(rt, f"mls-{c}", mine)
            keys += mine
        for n, key in enumerate(keys[::3]):
            for platform, pattern in PLATFORMS.items():
                post_id = pattern.format(n=n)
                state.publish(platform, post_id, f"{platform}-token")
                await add_post(rt, f"{platform}-{key}", f"L-{key}", f"acct-{platform}", post_id)
    return keys


async def _a_daemon_syncing(
    rt: Runtime, cluster: Cluster, rng: random.Random, offset: int
) -> tuple[int, datetime]:
    """A daemon that holds a connection's lease in a slot's cycle (its index, and the slot),
    still holding it a random moment (up to 0.5 s) after it was seen: a moment in its sync.
    In the next slot if none was seen in this one (on a loaded machine, a slot's syncs may
    all end between the test's looks); three slots at most."""
    for _ in range(3):
        slot = slot_start(utcnow(), INTERVAL, offset)
        with anyio.move_on_after((slot + timedelta(seconds=INTERVAL) - utcnow()).total_seconds()):
            while True:
                for holder in await _holders(rt):
                    victim = cluster.by_pid(int(holder.split(":")[1]))
                    if victim is None or cluster.daemons[victim].proc.poll() is not None:
                        continue
                    await anyio.sleep(rng.uniform(0.0, 0.5))
                    if await _left_a_lease(rt, cluster.daemons[victim].proc.pid):
                        return victim, slot
                await anyio.sleep(0.01)
    raise AssertionError("no daemon was seen syncing in three slots")


async def _holders(rt: Runtime, pid: int | None = None) -> list[str]:
    """The holders of the connections' unexpired leases (of process `pid`'s, if given)."""
    rows = await rt.db.fetch_all(
        "SELECT holder FROM sync_leases WHERE connection_id LIKE 'mls-%' AND expires_at >= ?",
        (iso(utcnow()),),
    )
    holders = [str(r[0]) for r in rows]
    return [h for h in holders if pid is None or h.split(":")[1] == str(pid)]


async def _left_a_lease(rt: Runtime, pid: int) -> bool:
    return bool(await _holders(rt, pid))


async def _until_each_renewed_since(rt: Runtime, since: datetime) -> None:
    """Until every daemon's process lease was renewed at or after `since`, the last start. A
    daemon takes another's lapsed lease for its death only if it saw it renewed while its
    own renewals went on (daemon/sync/process_lease.py `Witness`): a kill in the first
    seconds after a start, before the victim renewed once more, is left to its connection
    leases' expiry, which the round's limit rightly does not wait for (a fresh-clone run
    killed a daemon 4 s after all three started, and timed out)."""
    term = timedelta(seconds=process_lease.term_seconds(LEASE))
    with anyio.fail_after(3 * term.total_seconds()):
        while True:
            rows = await rt.db.fetch_all(
                "SELECT expires_at FROM sync_leases "
                "WHERE connection_id LIKE '~process:%' AND expires_at >= ?",
                (iso(utcnow()),),
            )
            renewed = [parse_iso(str(r[0])) - term for r in rows]
            if len(renewed) == DAEMONS and all(at >= since for at in renewed):
                return
            await anyio.sleep(0.2)


async def _live_processes(rt: Runtime) -> list[str]:
    """The holders of unexpired process leases (daemon/sync/process_lease.py)."""
    rows = await rt.db.fetch_all(
        "SELECT holder FROM sync_leases WHERE connection_id LIKE '~process:%' AND expires_at >= ?",
        (iso(utcnow()),),
    )
    return [str(r[0]) for r in rows]


async def _until_runs_ended(rt: Runtime, pid: int) -> None:
    """Until no run of the dead process `pid` is left `running`: once its process lease ran
    out, the next run of another daemon ends it."""
    with anyio.fail_after(2 * LEASE + INTERVAL):
        while await rt.db.fetch_all(
            "SELECT id FROM sync_runs WHERE outcome = 'running' AND holder LIKE ?",
            (f"%:{pid}",),
        ):
            await anyio.sleep(0.5)


async def _until_synced_since(rt: Runtime, slot: datetime) -> None:
    """Until every connection was synced since the slot began."""
    while await rt.db.fetch_all(
        "SELECT id FROM mls_connections WHERE last_synced_at IS NULL OR last_synced_at < ?",
        (iso(slot),),
    ):
        await anyio.sleep(0.1)


async def _until_no_lease_held(rt: Runtime) -> None:
    """Until no cycle runs: a restarted daemon's startup cycle, a catch-up."""
    with anyio.fail_after(LEASE * 2):
        while await _holders(rt):
            await anyio.sleep(0.1)


async def _until_in_step(rt: Runtime, mls: Mls, platforms: Platforms, limit: float) -> None:
    """Until every listing has the MLS's status and no sold listing has a live post."""
    settings = rt.settings
    with anyio.fail_after(limit):
        while True:
            consistency = await check_consistency(
                rt.db, mls[0], platforms[0], StatusMapping.build(), settings.sync.unpublish_on
            )
            if consistency.in_step:
                return
            await anyio.sleep(0.2)


async def _broken_trails(rt: Runtime) -> list[str]:
    """Listings whose audit trail does not chain from nothing to their status."""
    broken = []
    for row in await listings.list_some(rt.db, None, None, 1_000_000):
        trail = await listings.history(rt.db, row.id)
        chained = all(a.to_status == b.from_status for a, b in itertools.pairwise(trail))
        begins = bool(trail) and trail[0].from_status is None
        if not begins or not chained or trail[-1].to_status != row.status:
            broken.append(row.id)
    return broken


def _clock_syncs(lines: Sequence[dict[str, object]], offset: int) -> Counter[tuple[str, str]]:
    """How many times the clock's cycles synced each connection in each slot, from the
    daemons' logs: each run's trigger and start (`run_started`), each connection's sync
    (`connection_synced`)."""
    started = {
        line["run_id"]: (line["trigger"], datetime.fromisoformat(str(line["timestamp"])))
        for line in lines
        if line.get("event") == "run_started"
    }
    synced: Counter[tuple[str, str]] = Counter()
    for line in lines:
        if line.get("event") != "connection_synced" or line.get("run_id") not in started:
            continue
        trigger, at = started[line["run_id"]]
        if trigger in SHARED_TRIGGERS:
            synced[str(line["connection_id"]), iso(slot_start(at, INTERVAL, offset))] += 1
    return synced
