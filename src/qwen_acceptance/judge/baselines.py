"""baselines.yaml: the reference numbers per model, validated on load, updated in place without losing anything.

Each top-level key is a model::

    qwen3_8b:
      final_loss: 2.345            # reduced_train_loss at the last step; null until measured
      tolerance: 0.05              # |loss - final_loss| / final_loss must not exceed this
      tokens_per_sec_per_gpu: 6859.0
      throughput_band: [-0.10, 0.20]  # allowed relative change of tokens/s/GPU (a big gain asks for a refresh)
      curve: {steps: [0, 10, ...], loss: [...]}  # curves.sparse of the baseline run
      curve_band: 0.10             # each curve point within ±10% of the baseline's
      curve_min_correlation: 0.99
      provenance: {date: ..., gpu: ..., gpus: 8, layout: ..., log_sha256: ..., ...}
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from qwen_acceptance import yamlio
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import curves

DEFAULT_TOLERANCE = 0.05
DEFAULT_THROUGHPUT_BAND = (-0.10, 0.20)
REQUIRED_PROVENANCE = ("date", "gpus", "log_sha256")
_FIELDS = {
    "final_loss",
    "tolerance",
    "tokens_per_sec_per_gpu",
    "throughput_band",
    "curve",
    "curve_band",
    "curve_min_correlation",
    "provenance",
}


@dataclass(frozen=True)
class Baseline:
    model: str
    final_loss: float | None
    tolerance: float
    tokens_per_sec_per_gpu: float | None
    provenance: Mapping[str, Any] | None
    throughput_band: tuple[float, float] = DEFAULT_THROUGHPUT_BAND
    curve: curves.Curve | None = None
    curve_band: float = curves.DEFAULT_BAND
    curve_min_correlation: float = curves.DEFAULT_MIN_CORRELATION

    @property
    def measured(self) -> bool:
        return self.final_loss is not None


def _number(where: str, name: str, value: Any, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise AcceptanceError(f"{where}: field '{name}' must be a positive finite number, got {value!r}")
    return float(value)


def _parse_entry(model: str, entry: Any, where: str) -> Baseline:
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise AcceptanceError(f"{where}: entry must be a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise AcceptanceError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    loss = _number(where, "final_loss", entry.get("final_loss"), optional=True)
    tolerance = _number(where, "tolerance", entry.get("tolerance", DEFAULT_TOLERANCE), optional=False)
    if tolerance >= 1:
        raise AcceptanceError(f"{where}: field 'tolerance' is relative (0.05 = 5%), got {tolerance}")
    tps = _number(where, "tokens_per_sec_per_gpu", entry.get("tokens_per_sec_per_gpu"), optional=True)
    provenance = entry.get("provenance")
    if provenance is not None and not isinstance(provenance, Mapping):
        raise AcceptanceError(f"{where}: field 'provenance' must be a mapping")
    if loss is not None:
        missing = [k for k in REQUIRED_PROVENANCE if not (provenance or {}).get(k)]
        if missing:
            raise AcceptanceError(f"{where}: a measured baseline needs provenance field(s) {', '.join(missing)}")
    return Baseline(
        model,
        loss,
        tolerance,
        tps,
        dict(provenance) if provenance else None,
        throughput_band=_band(where, entry.get("throughput_band", list(DEFAULT_THROUGHPUT_BAND))),
        curve=_curve(where, entry.get("curve")),
        curve_band=_fraction(where, "curve_band", entry.get("curve_band", curves.DEFAULT_BAND)),
        curve_min_correlation=_fraction(
            where, "curve_min_correlation", entry.get("curve_min_correlation", curves.DEFAULT_MIN_CORRELATION)
        ),
    )


def _fraction(where: str, name: str, value: Any) -> float:
    number = _number(where, name, value, optional=False)
    assert number is not None
    if number > 1:
        raise AcceptanceError(f"{where}: field '{name}' is a fraction (0.10 = 10%), got {number}")
    return number


def _band(where: str, value: Any) -> tuple[float, float]:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        and -1 < value[0] <= 0 <= value[1]
    )
    if not ok:
        raise AcceptanceError(
            f"{where}: field 'throughput_band' must be [low, high] with -1 < low <= 0 <= high, got {value!r}"
        )
    return float(value[0]), float(value[1])


def _curve(where: str, value: Any) -> curves.Curve | None:
    if value is None:
        return None
    steps, loss = (value.get("steps"), value.get("loss")) if isinstance(value, Mapping) else (None, None)
    ok = (
        isinstance(steps, list)
        and isinstance(loss, list)
        and len(steps) == len(loss) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) for s in steps)
        and all(b > a for a, b in itertools.pairwise(steps))
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in loss)
    )
    if not ok:
        raise AcceptanceError(
            f"{where}: field 'curve' must be {{steps: [increasing integers], loss: [positive "
            "numbers]}} of equal length"
        )
    return curves.Curve(tuple(steps), tuple(float(v) for v in loss))


def _parse_document(doc: Any, path: Path) -> dict[str, Baseline]:
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise AcceptanceError(f"{path}: expected a mapping of model name to baseline entry")
    return {str(m): _parse_entry(str(m), e, f"{path}: {m}") for m, e in doc.items()}


def load(path: Path) -> dict[str, Baseline]:
    """All entries, validated; a corrupt file is an error naming the file and line or field."""
    return _parse_document(yamlio.load(path), path)


def require(baselines: Mapping[str, Baseline], model: str, path: Path) -> Baseline:
    """The measured baseline for ``model``; missing or empty fails with what to do, it never passes."""
    entry = baselines.get(model)
    if entry is None or not entry.measured:
        raise AcceptanceError(
            f"{path}: no measured baseline for '{model}'. Run the reference configuration on a reference system, "
            f"then record it with `pytest -m {model} --baseline-update` (or `--from-log {model}=LOG`)"
        )
    return entry


@dataclass(frozen=True)
class Update:
    """New numbers for one model, from a complete clean run."""

    final_loss: float
    tokens_per_sec_per_gpu: float | None
    provenance: Mapping[str, Any]
    curve: curves.Curve | None = None


def _apply(doc: CommentedMap, model: str, update: Update) -> None:
    entry = doc.get(model)
    if entry is None:
        entry = doc[model] = CommentedMap()
    entry["final_loss"] = round(update.final_loss, 6)
    entry.setdefault("tolerance", DEFAULT_TOLERANCE)
    entry["tokens_per_sec_per_gpu"] = (
        None if update.tokens_per_sec_per_gpu is None else round(update.tokens_per_sec_per_gpu, 2)
    )
    if update.curve is not None:
        entry["curve"] = CommentedMap(
            steps=_flow(update.curve.steps), loss=_flow(round(v, 4) for v in update.curve.loss)
        )
    entry["provenance"] = CommentedMap(update.provenance)


def _flow(values: Any) -> CommentedSeq:
    """A list written on one line: a 100-point curve stays two lines of the file."""
    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq


def apply_updates(path: Path, updates: Mapping[str, Update]) -> str:
    """Set the given models' entries and rewrite the file atomically; returns the unified diff.

    Only those entries change: other entries, comments and order survive. A lock makes concurrent writers
    (pytest-xdist workers) take turns; a file that does not validate is never written over.
    """
    with FileLock(str(path) + ".lock"):
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        doc = yamlio.load(path) if before else CommentedMap()
        if doc is None:
            doc = CommentedMap()
        _parse_document(doc, path)  # refuse to rewrite a file that is already corrupt
        for model, update in updates.items():
            _apply(doc, model, update)
        after = yamlio.dump(doc)
        _parse_document(yamlio.load_text(after, path), path)
        yamlio.write_atomic(path, after)
    return "".join(
        difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{path.name}", f"b/{path.name}")
    )
