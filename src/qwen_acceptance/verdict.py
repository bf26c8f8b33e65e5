"""The verdict of record: a run passes only if it reached its last step, never went NaN, and its final loss is
within the tolerance of the baseline (5% relative by default)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import metrics
from .errors import AcceptanceError
from .logparse import TrainingLog


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


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
        f"final loss {loss:.4g} vs baseline {baseline_loss:.4g}: {delta:+.2%} (tolerance ±{tolerance:.0%})",
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
