"""Which runs left `running` have no process behind them (daemon/sync/process_lease.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from daemon.sync.process_lease import Witness, orphaned_runs
from daemon.timestamps import iso

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LONG_AGO = iso(NOW - timedelta(seconds=120))
JUST_NOW = iso(NOW - timedelta(seconds=5))
LEASE = 60
LIVING = f"here:{os.getpid()}"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def _orphans(
    running: list[tuple[int, str, str]],
    leased: set[tuple[str, str]],
    lapsed: frozenset[str] = frozenset(),
) -> list[int]:
    return orphaned_runs(running, leased, lapsed, NOW, LEASE, "here")


def test_a_run_of_a_dead_process_on_this_host_is_orphaned_at_once() -> None:
    assert _orphans([(1, f"here:{_dead_pid()}", JUST_NOW), (2, LIVING, LONG_AGO)], set()) == [1]


def test_a_run_on_another_host_whose_process_lease_ran_out_is_orphaned_at_once() -> None:
    # Its connection's lease has not expired yet: the process's own, shorter lease says.
    leased = {("mls-1", "vm-b:7:0a1b2c3d")}
    running = [(1, "vm-b:7", JUST_NOW), (2, "vm-c:8", JUST_NOW)]
    assert _orphans(running, leased, lapsed=frozenset({"vm-b:7"})) == [1]


def test_a_lapsed_process_lease_on_this_host_does_not_outweigh_the_kernel() -> None:
    # A daemon here that was paused past its term, and lives: the kernel knows better.
    assert _orphans([(1, LIVING, LONG_AGO)], set(), lapsed=frozenset({LIVING})) == []


def test_a_run_on_another_host_lives_while_its_process_holds_any_lease() -> None:
    leased = {("~process:vm-b:7", "vm-b:7"), ("mls-1", "vm-c:8:0a1b2c3d")}
    running = [(1, "vm-b:7", LONG_AGO), (2, "vm-c:8", LONG_AGO), (3, "vm-d:9", LONG_AGO)]
    assert _orphans(running, leased) == [3]


def test_a_run_on_another_host_without_a_lease_gets_a_lease_time_before_it_is_orphaned() -> None:
    # A run of the CLI between two connections holds no lease for a moment.
    assert _orphans([(1, "vm-b:7", JUST_NOW)], set()) == []


def test_a_witness_sees_a_process_die_only_if_it_saw_it_renew() -> None:
    """A process lease that ran out says its process died only to a daemon whose own
    renewals went through since that lease's last renewal: after an outage, every lease
    ran out at once, the first daemon back saw none of them renewed, and takes none."""
    ran_out = iso(NOW - timedelta(seconds=3))  # renewed 18 s ago, for 15 s
    assert Witness(NOW - timedelta(seconds=60), 15).saw_die(ran_out, NOW)
    assert not Witness(NOW - timedelta(seconds=10), 15).saw_die(ran_out, NOW)  # back since
    still_runs = iso(NOW + timedelta(seconds=5))
    assert not Witness(NOW - timedelta(seconds=60), 15).saw_die(still_runs, NOW)
