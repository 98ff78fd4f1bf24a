"""The overview's run charts, laid out on the server: one bar per run, oldest on the left, as
inline SVG the templates draw. No script draws them, so they show without JavaScript and in
print; each chart has a table of the same figures beside it for screen readers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 600  # the viewBox's; the page scales it to the width it has
HEIGHT = 120
GAP = 0.2  # of each run's slot, left empty between bars


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: float
    run_id: int
    outcome: str  # ok, partial, failed, running: the bar's class


@dataclass(frozen=True)
class Chart:
    key: str  # its element ids
    title: str
    unit: str
    bars: list[Bar]
    top: float  # the value at the top of the chart
    width: int = WIDTH
    height: int = HEIGHT


@dataclass(frozen=True)
class Measure:
    key: str
    title: str
    unit: str
    value: Callable[[dict[str, Any]], float]


def charts(runs: Sequence[dict[str, Any]], measures: Sequence[Measure]) -> list[Chart]:
    """One chart per measure over `runs` (as the runs' views give them, newest first)."""
    oldest_first = list(reversed(runs))
    return [_chart(m, oldest_first) for m in measures]


def _chart(measure: Measure, runs: Sequence[dict[str, Any]]) -> Chart:
    values = [max(0.0, float(measure.value(r))) for r in runs]
    top = _nice_top(max(values, default=0.0))
    slot = WIDTH / max(1, len(runs))
    bars = []
    for n, (run, value) in enumerate(zip(runs, values, strict=True)):
        height = HEIGHT * value / top
        bars.append(
            Bar(
                x=round(n * slot + slot * GAP / 2, 2),
                y=round(HEIGHT - height, 2),
                width=round(slot * (1 - GAP), 2),
                height=round(height, 2),
                value=value,
                run_id=int(run["id"]),
                outcome=str(run["outcome"]),
            )
        )
    return Chart(measure.key, measure.title, measure.unit, bars, top)


def _nice_top(largest: float) -> float:
    """A round number at or above the largest value (1, 2 or 5 times a power of ten), so
    the axis label reads well; 1 for an empty or all-zero chart."""
    if largest <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= largest:
        step *= 10
    while step > largest:
        step /= 10
    for factor in (1, 2, 5, 10):
        if factor * step >= largest:
            return factor * step
    return 10 * step  # not reached: 10 * step is above largest by the loops above
