"""Sparse loss curves: catch a run that diverged at step 300 and recovered by 999, which the reference rule (the
last step alone) passes.

A curve has a point every 10 steps, each the mean loss over its 10 steps (one batch's noise is about ±5% at smoke
size, BENCHMARKS.md), and the last step's own loss. A run is compared point by point with the baseline's curve
(relative band) and as a whole (Pearson correlation). These checks flag; the reference rule stays the verdict of
record.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge.logparse import LOSS, TrainingLog

STRIDE = 10
DEFAULT_BAND = 0.10  # BENCHMARKS.md: noise runs stayed within 6.1% (another seed) and 1.4% (TP2)
DEFAULT_MIN_CORRELATION = 0.99  # BENCHMARKS.md: noise runs correlated at 0.9997 or more


@dataclass(frozen=True)
class Curve:
    steps: tuple[int, ...]
    loss: tuple[float, ...]

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self.steps, self.loss, strict=True))


def sparse(log: TrainingLog) -> Curve:
    """The log's curve; a point's window holds the steps the log has (a restart's gaps are skipped)."""
    log.require_steps()
    last = log.last_step
    steps, loss = [], []
    for start in range(0, last + 1, STRIDE):
        if (mean := window_mean(log, start, last)) is not None:
            steps.append(start)
            loss.append(mean)
    final = log.steps[last].get(LOSS)
    if final is not None and (not steps or steps[-1] != last):
        steps.append(last)
        loss.append(final)
    return Curve(tuple(steps), tuple(loss))


def window_mean(log: TrainingLog, start: int, last: int) -> float | None:
    """The point at ``start``: the mean loss of the steps of its window, up to ``last``, that the log has."""
    window = [
        v
        for s in range(start, min(start + STRIDE, last + 1))
        if s in log.steps and (v := log.steps[s].get(LOSS)) is not None
    ]
    return statistics.fmean(window) if window else None


def deviation(run: float, baseline: float) -> float:
    """A run's point against the baseline's: relative and signed."""
    return (run - baseline) / baseline


def within(deviation: float, band: float) -> bool:
    """Inside ±band; NaN is outside."""
    return abs(deviation) <= band


@dataclass(frozen=True)
class Comparison:
    worst_step: int
    worst_deviation: float  # relative, signed
    outside: tuple[int, ...]  # steps outside the band
    correlation: float
    points: int


def compare(run: Curve, baseline: Curve, band: float) -> Comparison:
    """Point-by-point relative deviation over the steps both curves have, and their correlation."""
    mine, theirs = run.as_dict(), baseline.as_dict()
    common = [s for s in baseline.steps if s in mine]
    if len(common) < 3:
        raise AcceptanceError(f"only {len(common)} curve points in common with the baseline; need at least 3")
    deviations = {s: deviation(mine[s], theirs[s]) for s in common}
    worst = max(common, key=lambda s: abs(deviations[s]) if math.isfinite(deviations[s]) else math.inf)
    outside = tuple(s for s in common if not within(deviations[s], band))
    return Comparison(
        worst, deviations[worst], outside, _pearson([mine[s] for s in common], [theirs[s] for s in common]), len(common)
    )


def _pearson(a: list[float], b: list[float]) -> float:
    if not all(map(math.isfinite, a + b)):
        return math.nan
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    sa = math.sqrt(sum((x - ma) ** 2 for x in a))
    sb = math.sqrt(sum((y - mb) ** 2 for y in b))
    if sa == 0 or sb == 0:
        return math.nan
    return sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)) / (sa * sb)
