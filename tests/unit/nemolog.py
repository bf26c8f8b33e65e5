"""Build training logs the way NeMo's ProgressPrinter prints them, for tests that need a log of a given shape."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from qwen_acceptance.judge.conformance import reference_lr
from qwen_acceptance.judge.logparse import CONFIG_MARKER
from qwen_acceptance.models import LRSchedule

_LOSS = re.compile(r"(reduced_train_loss: )([^ |\n]+)")
_STEP = re.compile(r"\| global_step: (\d+) ")
_LR = re.compile(r"(\| lr: )([^ |\n]+)")
_PLANNED = re.compile(r"iteration \d+/(\d+) ")


def fmt(value: float) -> str:
    """ProgressPrinter.format_string: integral floats print as ints, the rest with 4 significant digits."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return f"{value:.4}"


def step_line(
    step: int,
    last: int,
    loss: float,
    *,
    tokens: float | None = 1.0e5,
    seconds: float = 0.5,
    gbs: int = 16,
    lr: float = 3e-4,
    extra: dict[str, float] | None = None,
) -> str:
    fields: dict[str, float] = {
        "lr": lr,
        "global_batch_size": gbs,
        "global_step": step,
        "reduced_train_loss": loss,
        "train_step_timing in s": seconds,
    }
    if tokens is not None:
        fields["tokens_per_sec_per_gpu"] = tokens
    if step:
        fields["consumed_samples"] = (step + 1) * gbs
    fields.update(extra or {})
    body = " | ".join(f"{k}: {fmt(float(v))}" for k, v in fields.items())
    return f"Training epoch 0, iteration {step}/{last} | {body}"


def write_log(
    path: Path,
    steps: int,
    *,
    loss=lambda s: 10.0 - s * 0.005,
    tokens=lambda s: 1.0e5 + s,
    seconds=lambda s: 0.5,
    noise: bool = True,
    gbs: int = 16,
    lr=lambda s: 3e-4,
    world_size: int | None = None,
) -> Path:
    """``world_size``: print NeMo's process-group line, as a real log has it (the GPU count)."""
    lines = ["[NeMo W 2026-11-28 20:59:28 nemo_logging:405] a warning", "GPU available: True (cuda), used: True"]
    if world_size:
        lines.append(
            "[NeMo I 2026-11-28 20:59:29 nemo_logging:393] All data parallel group ranks with context "
            f"parallel combined: [{list(range(world_size))}]"
        )
    if noise:
        lines.append("You are using a CUDA device ('NVIDIA H200') that has Tensor Cores.")
    for s in range(steps):
        lines.append(
            step_line(
                s, steps - 1, loss(s), tokens=tokens(s) if tokens else None, seconds=seconds(s), gbs=gbs, lr=lr(s)
            )
        )
    lines.append("`Trainer.fit` stopped: `max_steps` reached.")
    path.write_text("\n".join(lines) + "\n")
    return path


def with_loss(line: str, loss: float) -> str:
    """A ProgressPrinter line with another loss, printed as NeMo prints it."""
    return _LOSS.sub(lambda m: m.group(1) + fmt(loss), line, count=1)


def scale_loss(lines: Iterable[str], factor: float, first: int = 0, last: int | None = None) -> Iterator[str]:
    """A recorded log with the loss of steps ``first``..``last`` multiplied by ``factor``: a broken run derived from
    a real one, for as long as no broken run is recorded."""
    for line in lines:
        step, loss = _STEP.search(line), _LOSS.search(line)
        if step and loss and first <= int(step.group(1)) <= (math.inf if last is None else last):
            line = with_loss(line, float(loss.group(2)) * factor)
        yield line


def with_schedule(lines: Iterable[str], lr: LRSchedule) -> Iterator[str]:
    """A recorded log as a run of another learning-rate schedule prints it: each step's lr (the reference's cosine)
    and the optimizer in the resolved line, so that the log is that run's as far as the suite can tell."""
    for line in lines:
        if line.startswith(CONFIG_MARKER):
            resolved = json.loads(line[len(CONFIG_MARKER) :])
            resolved["optim"].update(lr=lr.max, min_lr=lr.min, warmup_steps=lr.warmup_steps)
            line = CONFIG_MARKER + json.dumps(resolved) + "\n"
        elif (step := _STEP.search(line)) and (planned := _PLANNED.search(line)):
            value = reference_lr(int(step.group(1)), lr, int(planned.group(1)) + 1)
            line = _LR.sub(lambda m, v=fmt(value): m.group(1) + v, line, count=1)
        yield line
