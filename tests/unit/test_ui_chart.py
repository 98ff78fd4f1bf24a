"""The overview's run charts (daemon/ui/chart.py): laid out on the server, one bar per run."""

from __future__ import annotations

from typing import Any

from daemon.ui.chart import HEIGHT, WIDTH, Measure, charts

DURATION = Measure("duration", "Duration", "s", lambda r: r["seconds"])


def _runs(*seconds: float) -> list[dict[str, Any]]:
    """Runs as the API lists them: newest first."""
    count = len(seconds)
    return [{"id": count - n, "outcome": "ok", "seconds": s} for n, s in enumerate(seconds)]


def test_one_bar_per_run_oldest_on_the_left_scaled_to_a_round_top() -> None:
    [chart] = charts(_runs(4.0, 2.0, 1.0), [DURATION])  # newest first: run 3 took 4 s
    assert [b.run_id for b in chart.bars] == [1, 2, 3]
    assert chart.top == 5.0
    assert [b.height for b in chart.bars] == [HEIGHT * 1 / 5, HEIGHT * 2 / 5, HEIGHT * 4 / 5]
    assert all(b.y + b.height == HEIGHT for b in chart.bars)  # they stand on the axis
    xs = [b.x for b in chart.bars]
    assert xs == sorted(xs) and xs[-1] + chart.bars[-1].width <= WIDTH


def test_runs_of_nothing_still_get_a_chart_with_a_top() -> None:
    [chart] = charts(_runs(0.0, 0.0), [DURATION])
    assert chart.top == 1.0 and [b.height for b in chart.bars] == [0.0, 0.0]
    assert charts([], [DURATION])[0].bars == []
