"""Fail fast: compare a live run with its baseline after every step, stop it once its loss curve has clearly left
the baseline's, and warn when its throughput is unambiguously low. A broken stack usually leaves the curve long
before the last step, and a reference run holds 8 to 32 GPUs for hours.

The loss rule: each completed point of the curve (a 10-step mean, ``curves.window_mean``) is compared with the
baseline's point as ``test_loss_curve_within_band`` compares it (``curves.deviation``, ``curves.within``), against
a stop line ``MARGIN`` beyond the band; ``POINTS`` points past it in a row stop the run. A stopped run has left
the band, so it would have failed that test anyway. Throughput only warns: never a stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import curves, metrics
from qwen_acceptance.judge.baselines import Baseline
from qwen_acceptance.judge.logparse import StepRecord, TrainingLog
from qwen_acceptance.models import ModelSpec

# From the smoke noise measurements (BENCHMARKS.md, "Fail fast"): a margin of one step's batch noise (about 5%)
# beyond the ±10% band puts the stop line at ±15%, 8.9 points beyond the worst honest rerun (6.1%, another seed);
# three points in a row (30 steps) let a loss spike that recovers within 20 steps go on.
POINTS = 3
MARGIN = 0.05
# Throughput: the same model on the same GPU moved up to 7.4% between two runs (BENCHMARKS.md, smoke models).
THROUGHPUT_SPREAD = 0.074
THROUGHPUT_AFTER = 50  # steps of the reference window before the mean so far says anything


@dataclass(frozen=True)
class Point:
    """The last completed curve point, against the baseline's."""

    step: int
    run: float
    baseline: float
    deviation: float


class Watch:
    """Fed each step of a live run (``update``); says where the run stands (``status``) and, when fail-fast may
    stop it, why it must stop (``stopped``)."""

    def __init__(
        self, baseline: Baseline, spec: ModelSpec, *, stop: bool, points: int = POINTS, margin: float = MARGIN
    ) -> None:
        self.spec, self.stop, self.points = spec, stop, points
        self.curve = baseline.curve.as_dict() if baseline.curve is not None else {}
        self.band, self.stop_line = baseline.curve_band, baseline.curve_band + margin
        self.tokens, self.throughput_low = baseline.tokens_per_sec_per_gpu, baseline.throughput_band[0]
        self.point: Point | None = None
        self.beyond = 0  # points past the stop line in a row, the last one included
        self.slow: str | None = None  # the throughput warning
        self.stopped: str | None = None

    def update(self, log: TrainingLog, record: StepRecord) -> None:
        """After ``record`` was parsed into ``log``."""
        if (record.step + 1) % curves.STRIDE == 0:
            self._judge_point(log, record.step + 1 - curves.STRIDE)
        if self.tokens is not None and len(log.steps) >= metrics.REFERENCE_TRIM + THROUGHPUT_AFTER:
            self._judge_throughput(log, self.tokens)

    def _judge_point(self, log: TrainingLog, start: int) -> None:
        theirs = self.curve.get(start)
        mine = curves.window_mean(log, start, start + curves.STRIDE - 1)
        if theirs is None or mine is None:
            return
        self.point = point = Point(start, mine, theirs, curves.deviation(mine, theirs))
        self.beyond = 0 if curves.within(point.deviation, self.stop_line) else self.beyond + 1
        if self.stop and self.beyond >= self.points and self.stopped is None:
            self.stopped = (
                f"fail-fast: the loss curve was beyond ±{self.stop_line:.0%} of the baseline's for {self.points} "
                f"points in a row; at step {start} (mean of steps {start}..{start + curves.STRIDE - 1}) the run's "
                f"{mine:.4g} against the baseline's {theirs:.4g} ({point.deviation:+.1%}; band ±{self.band:.0%})"
            )

    def _judge_throughput(self, log: TrainingLog, baseline: float) -> None:
        try:
            so_far = metrics.throughput(
                log, seq_length=self.spec.seq_length, gpus=self.spec.gpus, planned_steps=self.spec.max_steps
            )
        except AcceptanceError:  # a step without the field or a step time: nothing unambiguous to say
            self.slow = None
            return
        edge = baseline * (1 + self.throughput_low)
        self.slow = (
            None
            if edge - so_far.mean <= 2 * THROUGHPUT_SPREAD * baseline
            else (
                f"SLOW: {so_far.mean:,.0f} tok/s/GPU over steps {so_far.first_step}..{so_far.last_step}, "
                f"{so_far.mean / baseline - 1:+.1%} from the baseline (band {self.throughput_low:+.0%})"
            )
        )

    def status(self) -> str:
        """For the live line: the last point against the baseline's, and a throughput warning."""
        parts = []
        if (p := self.point) is not None:
            if curves.within(p.deviation, self.band):
                verdict = "on track"
            elif self.stop:
                verdict = f"outside band ({self.beyond} of {self.points} past ±{self.stop_line:.0%})"
            else:
                verdict = "outside band"
            parts.append(f"curve @{p.step}: {p.run:.4g} vs baseline {p.baseline:.4g} ({p.deviation:+.1%}) {verdict}")
        if self.slow is not None:
            parts.append(self.slow)
        return "  ".join(parts)
