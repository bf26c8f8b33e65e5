"""What a throughput probe (``qwen-acceptance bench``) reports for its log: tokens/s/GPU over a window trimmed for
a short run, step time, peak memory over ranks, training FLOPs per token and MFU against the GPU's measured peak."""

from __future__ import annotations

import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from qwen_acceptance.judge import metrics
from qwen_acceptance.judge.logparse import TrainingLog
from qwen_acceptance.models import ModelSpec
from qwen_acceptance.perf import flops


def result(spec: ModelSpec, log: TrainingLog, log_path: Path) -> dict[str, Any]:
    """The probe's numbers: the reference's mean with a window trimmed for a short run (a tenth, at least 3 steps
    at each end: the first steps compile and warm up)."""
    trim = max(3, spec.max_steps // 10)
    tp = metrics.throughput(log, trim=trim, seq_length=spec.seq_length, gpus=spec.gpus)
    dims = flops.Dims.from_config(SimpleNamespace(**log.shape), spec.seq_length)
    per_token = flops.training_flops_per_token(dims)
    gpu = log.environment.get("gpu") or log.gpu_name
    peak = flops.peak_tflops(gpu)
    peak_mem = max((r.get("max_allocated_gib", 0.0) for r in log.peak_memory), default=None)
    return {
        "model": spec.name,
        "gpu": gpu,
        "gpus": spec.gpus,
        "layout": spec.layout.describe(),
        "global_batch_size": spec.global_batch_size,
        "micro_batch_size": spec.micro_batch_size,
        "seq_length": spec.seq_length,
        "steps": spec.max_steps,
        "trim": trim,
        "window": [tp.first_step, tp.last_step],
        "tokens_per_sec_per_gpu": tp.mean,
        "step_time_s": statistics.fmean(tp.step_times) if tp.step_times else None,
        "peak_memory_gib": None if peak_mem is None else round(peak_mem, 1),
        "flops_per_token": per_token,
        "peak_tflops": peak,
        "mfu": None if peak is None else flops.mfu(tp.mean, per_token, peak),
        "attention": log.resolved.get("attention"),
        "log": str(log_path),
    }
