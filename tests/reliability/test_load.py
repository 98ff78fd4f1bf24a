"""Load (issue 6.5): 200 clients polling /readyz and /status while a cycle runs. Answers must
stay fast (p99 under 100 ms) and the cycle must not slow down by more than 10%.

Every part is real and apart: the sandbox MLS feeds in a process of their own (as in the
benchmark), `mls-sync run` as a subprocess, and the clients in a third process
(tests/reliability/loadgen.py), each with its own keep-alive connection, asking once a second
on average (a monitoring agent or load balancer polls far less often than that). Each round
runs one cycle without the clients and one with them, after the same 1% of listings changed.

Short by default (2,000 listings, one round: answers only, since a cycle that short is mostly
noise). The full run, as docs/reliability.md reports it:
    MLS_SYNC_LOAD_LISTINGS=100000 MLS_SYNC_LOAD_ROUNDS=3 .venv/bin/pytest \\
        tests/reliability/test_load.py -s
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from daemon.encryption import generate_key
from daemon.timestamps import parse_iso
from tests.bench.bench import move, prepare, sandbox, write_config
from tests.e2e.daemon_process import Daemon
from tests.paths import REPO
from tests.ports import free_port

LISTINGS = int(os.environ.get("MLS_SYNC_LOAD_LISTINGS", "2000"))
ROUNDS = int(os.environ.get("MLS_SYNC_LOAD_ROUNDS", "1"))
CLIENTS = int(os.environ.get("MLS_SYNC_LOAD_CLIENTS", "200"))
PER_FEED = 100
# Below this a cycle lasts well under a second, and 10% of it is within the machine's noise.
SLOWDOWN_CHECKED_FROM = 50_000


class Clients:
    """The load generator process."""

    def __init__(self, url: str, out: Path) -> None:
        self.out = out
        self.cpu = 0.0
        self.proc = subprocess.Popen(  # noqa: S603 - our own module
            [
                sys.executable,
                "-m",
                "tests.reliability.loadgen",
                "--url",
                url,
                "--clients",
                str(CLIENTS),
                "--out",
                str(out),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await anyio.to_thread.run_sync(self.proc.stdout.readline)
        assert line.strip() == "ready", f"the load generator did not start: {line!r}"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> list[tuple[float, float, int]]:
        self.cpu = self.cpu_seconds()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        samples = []
        for line in self.out.read_text().splitlines():
            sent_at, latency, status = line.strip("[]").split(",")
            samples.append((float(sent_at), float(latency), int(status)))
        return samples


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _rounds(daemon: Daemon, mls_url: str, work: Path) -> dict[str, Any]:
    await daemon.wait_notify("READY=1", timeout=60)
    first = await daemon.wait_for_run(1, timeout=900)  # the startup cycle: all first seen
    next_id = int(first["id"]) + 1
    unloaded: list[float] = []
    loaded: list[float] = []
    during: list[tuple[float, float, int]] = []
    clients_cpu: list[float] = []
    total = 0
    for n in range(ROUNDS):
        for under_load in (False, True):
            clients = Clients(daemon.url, work / f"samples-{n}.jsonl") if under_load else None
            try:
                if clients is not None:
                    await clients.ready()
                await anyio.to_thread.run_sync(move, mls_url, LISTINGS // 100)
                daemon.send(signal.SIGUSR1)
                run = await daemon.wait_for_run(next_id, timeout=900)
            finally:
                samples = clients.stop() if clients is not None else []
            next_id = int(run["id"]) + 1
            started = parse_iso(run["started_at"]).timestamp()
            finished = parse_iso(run["finished_at"]).timestamp()
            assert run["errors"] == 0 and run["status_changes"] > 0, run
            if clients is None:
                unloaded.append(finished - started)
                continue
            loaded.append(finished - started)
            clients_cpu.append(clients.cpu)
            total += len(samples)
            during += [s for s in samples if started <= s[0] <= finished]
    latencies = [latency for _, latency, _ in during]
    return {
        "unloaded": unloaded,
        "loaded": loaded,
        "requests": total,
        "during": len(during),
        "failures": sum(1 for _, _, status in during if status != 200),
        "p50": _percentile(latencies, 0.50),
        "p99": _percentile(latencies, 0.99),
        "max": max(latencies),
        "clients_cpu": clients_cpu,
    }


@pytest.mark.serial
def test_200_polling_clients_get_fast_answers_while_a_cycle_runs_at_full_speed(
    tmp_path: Path,
) -> None:
    feeds = max(1, LISTINGS // PER_FEED)
    port = free_port()
    key = generate_key()
    with sandbox(feeds, PER_FEED) as server:
        config = write_config(
            tmp_path,
            server.platforms,
            sync={"interval_seconds": 86_400, "jitter_seconds": 0},
            daemon={"http_port": port},
            sandbox={"enabled": False},
        )
        prepare(config, key, server.mls, feeds, PER_FEED, key_filter="in", batch_size=50)
        daemon = Daemon.start(config, port, key, api_token=None)
        try:
            figures = anyio.run(_rounds, daemon, server.mls, tmp_path)
        finally:
            daemon.stop()

    unloaded = statistics.median(figures["unloaded"])
    loaded = statistics.median(figures["loaded"])
    print(
        f"\nload: {CLIENTS} clients, {LISTINGS:,} listings, {ROUNDS} round(s); "
        f"{figures['during']:,} answers during loaded cycles ({figures['requests']:,} in all), "
        f"{figures['failures']} failed; latency p50 {figures['p50']:.1f} ms, "
        f"p99 {figures['p99']:.1f} ms, max {figures['max']:.1f} ms; cycle without clients "
        f"{[round(s, 2) for s in figures['unloaded']]} s, with "
        f"{[round(s, 2) for s in figures['loaded']]} s: median ratio {loaded / unloaded:.3f}; "
        f"the clients' own CPU {[round(s, 2) for s in figures['clients_cpu']]} s"
    )
    # The clients really were asking during the cycles (about one answer each per second).
    assert figures["during"] >= 0.5 * CLIENTS * sum(figures["loaded"])
    assert figures["failures"] == 0
    assert figures["p99"] < 100
    if LISTINGS >= SLOWDOWN_CHECKED_FROM:
        assert loaded <= 1.10 * unloaded
