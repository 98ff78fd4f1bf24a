"""The benchmark at tiny sizes, in the default test run: its code works and its figures hold
together (the full run, with the targets, is `python -m tests.bench`)."""

from __future__ import annotations

import os
import shutil
import statistics
from pathlib import Path

import pytest

from tests.bench import versions
from tests.bench.bench import SMOKE, main
from tests.bench.engines import FLOORS, ONE_CPU
from tests.paths import REPO

pytestmark = pytest.mark.slow


def test_the_benchmark_runs_and_its_figures_hold_together() -> None:
    results = main(["--smoke"])
    by_name = {row["strategy"].split(" ")[0].rstrip(","): row for row in results["a"]}
    assert by_name["by_key"]["ratio_to_minimum"] == 1.0
    assert by_name["incremental"]["ratio_to_minimum"] <= 1.1
    for row in results["a"]:
        assert row["errors"] == 0
        assert row["status_changes"] == row["listings"] // 100  # the 1% that moved
    b = results["b"]
    assert b["wall_over_floor"] >= 1.0  # the shared credential's limit really holds
    # ... and no more than it, but for the cycle's own work: on a slow shared machine, with
    # the suite's other processes beside it, that work outlasts the smoke's short floor.
    assert b["wall_seconds"] <= 1.05 * b["floor_seconds"] + b["cpu_seconds"] + 1
    c = results["c"]
    assert c["successful_deletes"] == c["posts"] and c["posts_deleted_twice"] == 0
    d = results["d"]["with"]
    assert d["events"] == d["status_changes"] + 1  # each change, and the run's end
    assert (d["out_of_order"], d["unverified"], d["errors"]) == (0, 0, 0)
    e = results["e"]
    assert e["listings"] == e["connections"] * 50 and e["page_kb"] > 0
    f = results["f"]
    for way in ("pushed", "polled", "cycled"):
        row = f[way]
        # (the commit is seen by asking every 10 ms: up to that late)
        assert row["sales"] >= 1 and 0 < row["commit"]["p50"] <= row["delete"]["p50"] + 0.05
    # A polled sale waits for its read: never longer than the interval, and a little more.
    assert f["polled"]["commit"]["max"] <= f["polled"]["interval_seconds"] + 5
    assert f["cycled"]["commit"]["max"] <= f["cycled"]["interval_seconds"] + 5
    g = results["g"]
    # Live listings keep the 15-minute promise with tiers, for fewer requests; a closed one
    # waits longer (its tier).
    # (up to 900 s from a cycle to the next, and an answer up to 30 s into its cycle)
    for tiers in ("uniform", "tiers_shipped", "tiers_5_minutes"):
        found = g[tiers]["found_max_seconds"]
        assert all(found.get(status, 0) <= 930 for status in ("active", "pending", "coming_soon"))
    assert g["tiers_shipped"]["requests"] < g["uniform"]["requests"]


def test_scenario_h_finds_every_sale_each_way_within_its_interval() -> None:
    """Scenario H at tiny sizes (its full run is `--only h`, about 17 minutes)."""
    h = main(["--only", "h", "--smoke"])["h"]
    for way in ("pushed", "polled", "cycled"):
        row = h[way]
        assert row["sales"] == row["committed"] == row["deleted"] > 0
        assert 0 < row["commit"]["p50"] <= row["commit"]["p99"] <= row["commit"]["max"]
    # A polled sale waits for its read, then for the connection's 2 requests a second.
    assert h["polled"]["commit"]["max"] <= h["polled"]["interval_seconds"] + 5
    assert h["cycled"]["commit"]["max"] <= h["cycled"]["interval_seconds"] + 10
    assert h["pushed"]["commit"]["p95"] < 2


def test_scenario_i_measures_each_size_and_fetch_and_compares_them_with_linear() -> None:
    """Scenario I at tiny sizes (its full run, to 1,000,000 listings, is `--only i`)."""
    rows = main(["--only", "i", "--smoke"])["i"]
    assert [(r["fetch"], r["listings"]) for r in rows] == [
        ("by_key", 1000),
        ("incremental", 1000),
        ("by_key", 2000),
        ("incremental", 2000),
    ]
    for r in rows:
        assert r["errors"] == 0 and r["listings_checked"] > 0 and r["peak_rss_mb"] > 0
        assert r["cpu_growth_over_linear"] > 0
    assert rows[0]["cpu_growth_over_linear"] == rows[1]["cpu_growth_over_linear"] == 1.0


def test_scenario_j_runs_the_same_cycle_on_each_http_engine() -> None:
    rows = main(["--only", "j", "--smoke"])["j"]
    cycles, floors = rows[:4], rows[4:]
    assert [r["engine"] for r in cycles] == ["httpcore", "httpx-aiohttp", "aiohttp", ONE_CPU]
    for r in cycles:  # the same requests and changes, whatever the engine
        assert (r["mls_requests"], r["status_changes"], r["errors"]) == (
            rows[0]["mls_requests"],
            r["listings"] // 100,
            0,
        )
    # The floor: the same requests, through the HTTP client alone, then the MLS client.
    assert [r["engine"] for r in floors] == [name for name, _ in FLOORS]
    assert [r["mls_requests"] for r in floors] == [rows[0]["mls_requests"]] * 2
    for r in rows:  # the kernel's part of each side's CPU, within it
        assert 0 <= r["kernel_seconds"] <= r["cpu_seconds"]
        assert 0 <= r["sandbox_kernel_seconds"] <= r["sandbox_cpu_seconds"]
        # The ratio shown is the median of every measured run's, not one run's.
        assert len(r["ratio_runs"]) == SMOKE.j_repeats
        assert r["cpu_over_sandbox"] == round(statistics.median(r["ratio_runs"]), 3)
    # One CPU: the cycle and the sandbox server both ran on one processor, the same one;
    # on two, each could run on any.
    assert len(cycles[3]["cpus"]) == 1 and cycles[3]["sandbox_cpus"] == cycles[3]["cpus"]
    assert cycles[2]["cpus"] == cycles[2]["sandbox_cpus"] == sorted(os.sched_getaffinity(0))


def test_scenario_k_runs_the_same_cycles_on_sqlite_on_postgresql_and_on_two_daemons() -> None:
    rows = main(["--only", "k", "--smoke"])["k"]
    assert [(r["fetch"], r["database"]) for r in rows] == [
        ("by_key", "sqlite"),
        ("by_key", "postgresql"),
        ("by_key", "postgresql, 2 daemons"),
        ("incremental", "sqlite"),
        ("incremental", "postgresql"),
        ("incremental", "postgresql, 2 daemons"),
    ]
    for sqlite, postgresql, two in (rows[:3], rows[3:]):  # the same work, however it is run
        # Two daemons share the slot's cycle: the same changes and requests as one daemon.
        assert len(two["checked_by_each"]) == 2
        assert two["status_changes"] == sqlite["status_changes"]
        assert (two["mls_requests"], two["errors"]) == (sqlite["mls_requests"], 0)
        assert (postgresql["status_changes"], postgresql["errors"]) == (
            sqlite["status_changes"],
            0,
        )
        assert postgresql["mls_requests"] == sqlite["mls_requests"]
        assert postgresql["database_cpu_seconds"] > 0 and "database_cpu_seconds" not in sqlite


def test_scenario_l_prunes_a_grown_history_that_is_all_within_its_retention() -> None:
    rows = main(["--only", "l", "--smoke"])["l"]
    assert [r["deliveries"] for r in rows] == [1000, 2000]
    for r in rows:  # nothing is old enough to go, however long the history
        assert r["deleted"] == 0 and r["prune_ms"] > 0


def test_two_versions_take_turns_on_one_processor_with_the_sandbox(tmp_path: Path) -> None:
    copy = tmp_path / "copy"  # the second version: this code, copied
    for part in ("daemon", "tests"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    rows = versions.main(["--rounds", "2", "--feeds", "2", str(REPO), str(copy)])
    assert [r["tree"] for r in rows] == [str(REPO), str(copy)]
    assert [r["checkout"] for r in rows] == [str(REPO), str(copy)]  # each ran its own code
    for r in rows:
        assert len(r["ratio_runs"]) == 2 and r["errors"] == 0
        assert len(r["cpus"]) == 1 and r["sandbox_cpus"] == r["cpus"]


def test_versions_refuses_a_checkout_named_twice_or_not_a_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, why in (
        ([str(REPO), str(REPO)], "a checkout is named twice"),
        ([str(REPO), str(tmp_path)], "is not a checkout of this repository"),
    ):
        with pytest.raises(SystemExit) as refused:
            versions.main(argv)
        assert refused.value.code == 2 and why in capsys.readouterr().err
