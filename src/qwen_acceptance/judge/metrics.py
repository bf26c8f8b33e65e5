"""The reference's two numbers, computed exactly by its rules (../shared/seed/).

Final loss: ``reduced_train_loss`` at the run's last step (``global_step: 999`` for 1000 steps); a run that never
got there has no final loss. Throughput: the mean ``tokens_per_sec_per_gpu`` over the logged steps sorted by step,
without the first 10 and the last 10.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge.logparse import LOSS, STEP_TIME, TOKENS_PER_GPU, StepRecord, TrainingLog
from qwen_acceptance.models import ModelSpec

REFERENCE_TRIM = 10


@dataclass(frozen=True)
class Throughput:
    """tokens/s/GPU over the steady window, plus the spread that makes one night comparable with the next."""

    mean: float
    median: float
    stdev: float
    minimum: float
    maximum: float
    steps_used: int
    first_step: int
    last_step: int
    trim: int
    derived: bool
    step_times: tuple[float, ...]


def final_loss(log: TrainingLog, final_step: int) -> float:
    """The loss at ``final_step``; not reaching it is an error, never a pass."""
    log.require_steps()
    record = log.steps.get(final_step)
    if record is None:
        raise AcceptanceError(
            f"{log.source}: the run did not reach global_step {final_step} (last step logged: {log.last_step})"
        )
    loss = record.get(LOSS)
    if loss is None:
        raise AcceptanceError(f"{log.source}:{record.line}: global_step {final_step} has no {LOSS}")
    return loss


def non_finite_steps(log: TrainingLog, key: str = LOSS) -> list[int]:
    """Steps whose ``key`` is NaN or infinite: any of them fails a run, even if it recovered later."""
    return [r.step for r in log.ordered() if (v := r.get(key)) is not None and not math.isfinite(v)]


def _tokens_per_gpu(
    log: TrainingLog, records: list[StepRecord], seq_length: int | None, gpus: int | None
) -> tuple[list[float], bool]:
    """tokens/s/GPU of ``records`` (the window: a cut line outside it does not matter), logged or derived."""
    if all(TOKENS_PER_GPU in r.fields for r in records):
        return [r.fields[TOKENS_PER_GPU] for r in records], False
    if seq_length is None or gpus is None:
        missing = next(r for r in records if TOKENS_PER_GPU not in r.fields)
        raise AcceptanceError(
            f"{log.source}:{missing.line}: no {TOKENS_PER_GPU} (run with TimingCallback(log_tokens_per_sec=True)), "
            "and no sequence length and GPU count to derive it from"
        )
    values = []
    for r in records:
        batch, seconds = r.get("global_batch_size"), r.get(STEP_TIME)
        if batch is None or seconds is None or seconds <= 0:
            raise AcceptanceError(
                f"{log.source}:{r.line}: cannot derive {TOKENS_PER_GPU}: needs global_batch_size and '{STEP_TIME}'"
            )
        values.append(batch * seq_length / (gpus * seconds))
    return values, True


def throughput(
    log: TrainingLog,
    *,
    trim: int = REFERENCE_TRIM,
    seq_length: int | None = None,
    gpus: int | None = None,
    planned_steps: int | None = None,
) -> Throughput:
    """The reference-rule mean; when the field is absent it is derived as batch × seq / (GPUs × step time).

    ``planned_steps`` is for a run still in progress: the window ends where the finished run's will, and holds the
    steps logged so far."""
    log.require_steps()
    records = log.ordered()
    end = min(len(records), (planned_steps or len(records)) - trim)
    if end <= trim:
        raise AcceptanceError(
            f"{log.source}: {len(records)} steps logged; the throughput window drops the first and last {trim}, "
            "so it needs more"
        )
    kept = records[trim:end]
    used, derived = _tokens_per_gpu(log, kept, seq_length, gpus)
    bad = [r.step for r, v in zip(kept, used, strict=True) if not math.isfinite(v)]
    if bad:
        raise AcceptanceError(f"{log.source}: {TOKENS_PER_GPU} is not finite at steps {bad[:5]}")
    return Throughput(
        mean=statistics.fmean(used),
        median=statistics.median(used),
        stdev=statistics.stdev(used) if len(used) > 1 else 0.0,
        minimum=min(used),
        maximum=max(used),
        steps_used=len(used),
        first_step=kept[0].step,
        last_step=kept[-1].step,
        trim=trim,
        derived=derived,
        step_times=tuple(t for r in kept if (t := r.get(STEP_TIME)) is not None),
    )


def run_throughput(log: TrainingLog, spec: ModelSpec) -> Throughput:
    """The reference-rule throughput of a finished run of ``spec``, whose sequence length and GPU count derive
    tokens/s/GPU where the log lacks the field: what the tests, the baseline, the report and ``launch`` show."""
    return throughput(log, seq_length=spec.seq_length, gpus=spec.gpus)


@dataclass(frozen=True)
class Summary:
    """What `qwen-acceptance summarize` reports, and what the acceptance tests judge."""

    source: str
    steps_read: int
    last_step: int | None
    planned_last_step: int | None
    final_loss: float | None
    non_finite_loss_steps: list[int]
    throughput: Throughput | None
    throughput_error: str | None
    unreadable_lines: int
    repeated_steps: int
    truncated_last_line: bool
    gpu_name: str | None

    def to_json(self) -> dict:
        data = asdict(self)
        tp = self.throughput
        data.pop("throughput")
        data["tokens_per_sec_per_gpu"] = tp.mean if tp else None
        data["throughput_steps"] = tp.steps_used if tp else 0
        data["throughput_window"] = (
            {k: v for k, v in asdict(tp).items() if k not in {"mean", "step_times"}} if tp else None
        )
        return data


def summarize(
    log: TrainingLog, *, seq_length: int | None = None, gpus: int | None = None, trim: int = REFERENCE_TRIM
) -> Summary:
    """Everything the log tells, without a verdict; the loss is read at the last step the log reached."""
    log.require_steps()
    last = log.last_step
    try:
        tp, tp_error = throughput(log, trim=trim, seq_length=seq_length, gpus=gpus), None
    except AcceptanceError as exc:
        tp, tp_error = None, str(exc)
    return Summary(
        source=log.source,
        steps_read=len(log.steps),
        last_step=last,
        planned_last_step=log.planned_last_step,
        final_loss=log.steps[last].get(LOSS),
        non_finite_loss_steps=non_finite_steps(log),
        throughput=tp,
        throughput_error=tp_error,
        unreadable_lines=len(log.unreadable_lines),
        repeated_steps=log.repeated_steps,
        truncated_last_line=log.truncated_last_line,
        gpu_name=log.gpu_name,
    )
