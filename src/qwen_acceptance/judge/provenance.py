"""Where a run came from, as its log tells it (not as the model matrix says it should be): the one record that a
baseline keeps and a run report prints, so a later reader can tell whether the numbers still apply."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qwen_acceptance.judge.conformance import gpus_of
from qwen_acceptance.judge.logparse import TrainingLog
from qwen_acceptance.models import ModelSpec


def suite_commit() -> str | None:
    """The git commit of this suite's checkout, when it runs from one."""
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def log_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def of_run(
    log: TrainingLog, log_path: Path, spec: ModelSpec, *, origin: str, unverified: Sequence[str] = ()
) -> dict[str, Any]:
    """GPUs, layout, batch, steps and seed from the log (None where it does not show them), the software
    environment the suite's live runs print, and the log's own identity."""
    env, resolved = log.environment, log.resolved
    data = resolved.get("data") or {}
    batches = sorted({int(v) for r in log.ordered() if (v := r.get("global_batch_size")) is not None})
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": spec.name,
        "recipe": spec.recipe,
        "origin": origin,
        "gpu": env.get("gpu") or log.gpu_name,
        "gpus": gpus_of(log),
        "layout": resolved.get("layout"),
        "global_batch_size": batches[0] if len(batches) == 1 else data.get("global_batch_size"),
        "seq_length": data.get("seq_length"),
        "max_steps": None if log.planned_last_step is None else log.planned_last_step + 1,
        "seed": resolved.get("seed", data.get("seed")),
        "container": env.get("container"),
        "driver": env.get("driver"),
        "cuda": env.get("cuda"),
        "torch": env.get("torch"),
        "nemo": env.get("nemo"),
        "megatron_core": env.get("megatron_core"),
        "transformer_engine": env.get("transformer_engine"),
        "run_started": log.started,
        "not_verified": list(unverified),
        "suite_commit": suite_commit(),
        "log": str(log_path),
        "log_sha256": log_sha256(log_path),
    }
