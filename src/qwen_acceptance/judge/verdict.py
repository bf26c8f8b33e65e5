"""The checks that judge a run, one function each, shared by the pytest tests, ``qwen-acceptance check`` and the
sensitivity matrix. The verdict of record: a run passes only if it reached its last step, never went NaN, and its
final loss is within the tolerance of the baseline (5% relative by default); the curve and throughput checks flag
what the last step alone cannot show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import curves, metrics
from qwen_acceptance.judge.baselines import Baseline
from qwen_acceptance.judge.conformance import Conformance
from qwen_acceptance.judge.logparse import TrainingLog
from qwen_acceptance.models import ModelSpec


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    values: Mapping[str, Any] = field(default_factory=dict)  # the numbers behind it, for reports and JUnit


@dataclass(frozen=True)
class Verdict:
    source: str
    final_step: int
    final_loss: float | None
    baseline_loss: float
    tolerance: float
    relative_delta: float | None
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def check_final_step(log: TrainingLog, final_step: int) -> Check:
    reached = final_step in log.steps
    detail = f"global_step {final_step} {'reached' if reached else 'not reached'} (last logged: {log.last_step})"
    return Check("final_step_reached", reached, detail)


def check_finite_loss(log: TrainingLog) -> Check:
    bad = metrics.non_finite_steps(log)
    detail = "loss finite at every step" if not bad else f"loss NaN/inf at steps {bad[:10]}"
    return Check("loss_finite", not bad, detail)


def relative_delta(loss: float, baseline_loss: float) -> float:
    return (loss - baseline_loss) / baseline_loss


def check_loss(loss: float, baseline_loss: float, tolerance: float) -> Check:
    delta = relative_delta(loss, baseline_loss)
    # NaN compares false, so a NaN loss fails here too.
    ok = abs(delta) <= tolerance + 1e-12
    return Check(
        "final_loss_within_tolerance",
        ok,
        f"final loss {loss:.4g} vs baseline {baseline_loss:.4g}: {delta:+.2%} (tolerance ±{100 * tolerance:g}%)",
    )


def judge(log: TrainingLog, *, final_step: int, baseline_loss: float, tolerance: float) -> Verdict:
    """All checks of the reference rule for one log."""
    log.require_steps()
    checks = [check_final_step(log, final_step), check_finite_loss(log)]
    try:
        loss = metrics.final_loss(log, final_step)
    except AcceptanceError:
        loss = None
    delta = None
    if loss is None:
        checks.append(Check("final_loss_within_tolerance", False, f"no loss at global_step {final_step}"))
    else:
        delta = relative_delta(loss, baseline_loss)
        checks.append(check_loss(loss, baseline_loss, tolerance))
    return Verdict(log.source, final_step, loss, baseline_loss, tolerance, delta, tuple(checks))


def check_final_loss(log: TrainingLog, spec: ModelSpec, entry: Baseline) -> Check:
    """The reference rule against a measured baseline entry."""
    loss = metrics.final_loss(log, spec.final_step)
    check = check_loss(loss, entry.final_loss, entry.tolerance)
    values = {
        "final_loss": loss,
        "baseline_loss": entry.final_loss,
        "loss_delta_pct": round(100 * relative_delta(loss, entry.final_loss), 3),
        "tolerance_pct": 100 * entry.tolerance,
        "verdict": "pass" if check.passed else "fail",
    }
    return Check(check.name, check.passed, check.detail, values)


def curve_comparison(log: TrainingLog, entry: Baseline, where: Path) -> curves.Comparison:
    if entry.curve is None:
        raise AcceptanceError(
            f"{where}: '{entry.model}' has no loss curve; record one with `pytest -m {entry.model} --baseline-update`"
        )
    return curves.compare(curves.sparse(log), entry.curve, entry.curve_band)


def check_curve_band(log: TrainingLog, entry: Baseline, where: Path) -> Check:
    """Every 10-step mean within the baseline curve's band: a run that diverged and recovered is caught."""
    c = curve_comparison(log, entry, where)
    detail = (
        f"loss left the ±{entry.curve_band:.0%} band around the baseline curve at steps {list(c.outside)[:10]}"
        if c.outside
        else f"loss within ±{entry.curve_band:.0%} of the baseline curve at every point"
    ) + (f" (worst {c.worst_deviation:+.1%} at step {c.worst_step})")
    return Check(
        "loss_curve_within_band",
        not c.outside,
        detail,
        {"curve_worst_step": c.worst_step, "curve_worst_deviation_pct": round(100 * c.worst_deviation, 2)},
    )


def check_curve_correlation(log: TrainingLog, entry: Baseline, where: Path) -> Check:
    c = curve_comparison(log, entry, where)
    return Check(
        "loss_curve_correlates",
        c.correlation >= entry.curve_min_correlation,
        f"loss curve correlates {c.correlation:.4f} with the baseline's over {c.points} points "
        f"(minimum {entry.curve_min_correlation})",
        {"curve_correlation": round(c.correlation, 5)},
    )


def check_throughput(tp: metrics.Throughput, entry: Baseline, where: Path) -> Check:
    """tokens/s/GPU within the baseline's band: slower fails, and so does much faster (refresh the baseline)."""
    if entry.tokens_per_sec_per_gpu is None:
        raise AcceptanceError(f"{where}: '{entry.model}' has no tokens_per_sec_per_gpu")
    change = tp.mean / entry.tokens_per_sec_per_gpu - 1
    low, high = entry.throughput_band
    detail = (
        f"{tp.mean:,.0f} tokens/s/GPU is {change:+.1%} from the baseline's {entry.tokens_per_sec_per_gpu:,.0f} "
        f"(band {low:+.0%} / {high:+.0%}"
        + ("; a gain this large asks for a baseline refresh)" if change > high else ")")
    )
    return Check(
        "throughput_within_band",
        low <= change <= high,
        detail,
        {
            "tokens_per_sec_per_gpu": round(tp.mean, 2),
            "baseline_tokens_per_sec_per_gpu": entry.tokens_per_sec_per_gpu,
            "throughput_change_pct": round(100 * change, 2),
        },
    )


def check_conformance(result: Conformance) -> Check:
    """The run is the reference run (``conformance.check``); what the log could not show is listed, never passed
    over in silence."""
    detail = (
        "follows the reference configuration"
        if result.conforms
        else "differs from the reference configuration: " + "; ".join(result.differences)
    )
    if result.unverified:
        detail += f" (not verified from the log: {'; '.join(result.unverified)})"
    return Check(
        "run_follows_reference",
        result.conforms,
        detail,
        {
            "conforms": result.conforms,
            "conformance_differences": list(result.differences),
            "conformance_unverified": list(result.unverified),
        },
    )
