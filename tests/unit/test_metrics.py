"""/metrics' counters following the run history: each error counted once, however scrapes and
the cycle's end interleave (daemon/service/metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.service.cycle_status import cycle_status
from daemon.service.metrics import Metrics, tally_increase
from daemon.store.cycle_health import CycleHealth
from daemon.store.records import RunRow
from daemon.store.runs import Tally
from daemon.sync.engine import RunReport

BATCH_A = ("batch", "mls-a")
POST = ("post", None)


@pytest.mark.parametrize(
    ("now", "counted", "added"),
    [
        (Tally(1, 5, 2, {BATCH_A: 1}), None, Tally(1, 5, 2, {BATCH_A: 1})),
        (
            Tally(1, 9, 3, {BATCH_A: 2, POST: 1}),
            Tally(1, 5, 2, {BATCH_A: 1}),
            Tally(1, 4, 1, {BATCH_A: 1, POST: 1}),
        ),
        # A snapshot read before the last count, served after it: nothing to add.
        (Tally(1, 5, 2, {BATCH_A: 1}), Tally(1, 9, 3, {BATCH_A: 2}), Tally(1, 0, 0, {})),
    ],
    ids=["first look", "more since", "older snapshot"],
)
def test_a_scrape_adds_only_what_the_run_recorded_since_the_last_count(
    now: Tally, counted: Tally | None, added: Tally
) -> None:
    assert tally_increase(now, counted) == added


def test_errors_counted_while_the_cycle_ran_are_not_counted_again_at_its_end() -> None:
    metrics = Metrics("1.0")
    metrics.follow(Tally(7, 50, 1, {BATCH_A: 1}))
    metrics.follow(Tally(7, 100, 2, {BATCH_A: 1, ("listing", "mls-a"): 2}))
    metrics.record_run(_report(7), 3.0, {}, Tally(7, 150, 3, {BATCH_A: 2, ("listing", "mls-a"): 2}))
    metrics.follow(Tally(7, 100, 2, {BATCH_A: 1}))  # a snapshot from before the end, late

    assert _sample(metrics, "mls_sync_errors_total", scope="batch") == 2
    assert _sample(metrics, "mls_sync_errors_total", scope="listing") == 2
    assert _sample(metrics, "mls_sync_connection_errors_total", connection="mls-a") == 4
    assert _sample(metrics, "mls_sync_listings_checked_total") == 150
    assert _sample(metrics, "mls_sync_mls_requests_total") == 3


def test_a_removed_connection_loses_its_series_at_the_next_cycle() -> None:
    metrics = Metrics("1.0")
    metrics.set_cycle_health(_health("mls-a", "mls-b"), now=1000.0)
    metrics.follow(Tally(1, 0, 0, {BATCH_A: 1}))
    metrics.set_cycle_health(_health("mls-b"), now=1000.0)

    for name in (
        "mls_sync_connection_errors_total",
        "mls_sync_connection_last_success_timestamp_seconds",
        "mls_sync_connection_failing",
    ):
        assert _sample(metrics, name, connection="mls-a") is None, name
        assert _sample(metrics, name, connection="mls-b") == 0, name


@pytest.mark.parametrize(
    ("outcome", "errors", "line"),
    [
        (
            "ok",
            0,
            "last cycle ok (run 4, ended 2026-11-30T04:10:05Z): listings checked 300, "
            "status changes 4, posts taken down 1, errors 0",
        ),
        (
            "partial",
            3,
            "last cycle partial (run 4, ended 2026-11-30T04:10:05Z): listings "
            "checked 300, status changes 4, posts taken down 1, errors 3 "
            "(mls-sync history --run 4)",
        ),
    ],
)
def test_systemd_status_says_how_the_last_cycle_went(outcome: str, errors: int, line: str) -> None:
    run = _run(4, outcome=outcome, errors=errors)
    assert cycle_status(run) == line


def _run(run_id: int, outcome: str = "ok", errors: int = 0) -> RunRow:
    return RunRow(
        id=run_id,
        trigger="timer",
        scope="all",
        holder="host:1",
        started_at="2026-11-30T04:09:00.000000Z",
        finished_at="2026-11-30T04:10:05.123456Z",
        outcome=outcome,
        connections=1,
        listings_checked=300,
        status_changes=4,
        posts_unpublished=1,
        errors=errors,
        warnings=0,
        mls_requests=6,
    )


def _report(run_id: int) -> RunReport:
    return RunReport(_run(run_id))


def _health(*connection_ids: str) -> CycleHealth:
    return CycleHealth(
        last_ended_at=None,
        last_read_the_mls_at=None,
        first_started_at=None,
        connection_failing=dict.fromkeys(connection_ids, False),
        connection_last_read_at=dict.fromkeys(connection_ids),
    )


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
