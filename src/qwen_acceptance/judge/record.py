"""``--baseline-update``: a run becomes a model's baseline only when it is complete, clean, the reference run, and
shows its GPU count; its final loss, throughput, loss curve and provenance (from the log) then replace the model's
entry, and nothing else in the file changes."""

from __future__ import annotations

from pathlib import Path

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import baselines, curves, metrics, provenance, verdict
from qwen_acceptance.judge.conformance import Conformance, gpus_of
from qwen_acceptance.judge.logparse import TrainingLog
from qwen_acceptance.models import ModelSpec


def refusal(log: TrainingLog, spec: ModelSpec, conforms: Conformance) -> str | None:
    """Why this run must not become the baseline, or None."""
    problems = [
        c.detail
        for c in (verdict.check_final_step(log, spec.final_step), verdict.check_finite_loss(log))
        if not c.passed
    ]
    if problems:
        return "an incomplete or unclean run: " + "; ".join(problems)
    if not conforms.conforms:
        return "a run that differs from the reference configuration: " + "; ".join(conforms.differences)
    if gpus_of(log) is None:
        return (
            "the log does not show its GPU count (NeMo's 'All ... group ranks' lines or the suite's resolved "
            "line); give the whole log"
        )
    return None


def record_baseline(
    path: Path,
    spec: ModelSpec,
    log: TrainingLog,
    log_path: Path,
    *,
    origin: str,
    conforms: Conformance,
    throughput: metrics.Throughput | None,
) -> str:
    """Write the run as ``spec``'s baseline in ``path`` (atomic, locked, comments kept); returns the diff."""
    why = refusal(log, spec, conforms)
    if why is not None:
        raise AcceptanceError(f"{spec.name}: not updating the baseline from {why}")
    update = baselines.Update(
        metrics.final_loss(log, spec.final_step),
        None if throughput is None else throughput.mean,
        provenance.of_run(log, log_path, spec, origin=origin, unverified=conforms.unverified),
        curves.sparse(log),
    )
    return baselines.apply_updates(path, {spec.name: update})
