"""The model matrix (models.yaml): what each model trains with, checked against the reference's rules on load."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from qwen_acceptance import yamlio
from qwen_acceptance.errors import AcceptanceError

MODELS_ENV = "QWEN_ACCEPTANCE_MODELS"


@dataclass(frozen=True)
class Layout:
    """Parallel layout; the product tp × pp × cp must divide the GPU count, the rest is data parallel."""

    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int = 1
    vp: int | None = None
    sp: bool = False

    def model_parallel(self) -> int:
        return self.tp * self.pp * self.cp

    def describe(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}", f"CP{self.cp}"]
        if self.ep > 1:
            parts += [f"EP{self.ep}", f"ETP{self.etp}"]
        if self.vp:
            parts.append(f"VP{self.vp}")
        if self.sp:
            parts.append("SP")
        return " ".join(parts)


@dataclass(frozen=True)
class LRSchedule:
    max: float
    min: float
    warmup_steps: int


@dataclass(frozen=True)
class DataSpec:
    """The corpus and tokenizer, as sources.resolve_input / resolve_tokenizer take them."""

    corpus: str
    tokenizer: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    recipe: str
    reference_gpus: int
    gpus: int
    global_batch_size: int
    micro_batch_size: int
    seq_length: int
    max_steps: int
    seed: int
    layout: Layout
    lr: LRSchedule
    data: DataSpec
    markers: tuple[str, ...] = ()  # pytest markers beside the model's own name (e.g. smoke)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    probe: bool = False  # a probe (bench, --probe): may change what the reference fixes; never judged as reference

    @property
    def final_step(self) -> int:
        """The step the reference reads the loss at: ``global_step: 999`` for 1000 steps."""
        return self.max_steps - 1

    @property
    def data_parallel(self) -> int:
        return self.gpus // self.layout.model_parallel()

    def with_changes(self, *, probe: bool = False, **changes: Any) -> ModelSpec:
        """The same model with other GPUs, layout, seed, steps or batch, re-checked against the reference's rules.
        ``probe``: a throughput probe, which may use fewer GPUs than the reference (never an acceptance run)."""
        spec = replace(self, probe=probe or self.probe, **changes)
        _check(spec, f"{self.name} (with {', '.join(f'{k}={v}' for k, v in changes.items())})")
        return spec


def default_path() -> Path:
    """models.yaml shipped in the package, unless QWEN_ACCEPTANCE_MODELS names another."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    return Path(str(resources.files(__package__).joinpath("models.yaml")))


def _positive_int(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AcceptanceError(f"{where}: field '{name}' must be a positive integer, got {value!r}")
    return value


def _build(cls: type, where: str, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise AcceptanceError(f"{where}: must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)} - {"probe"}  # set by the command line, never by the matrix
    unknown = sorted(set(data) - known)
    if unknown:
        raise AcceptanceError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    try:
        return cls(**dict(data))
    except TypeError as exc:
        raise AcceptanceError(f"{where}: {exc}") from None


def _check(spec: ModelSpec, where: str) -> None:
    """The reference's constraints: a clear error for each, naming the model and the field."""
    for name in ("reference_gpus", "gpus", "global_batch_size", "micro_batch_size", "seq_length", "max_steps"):
        _positive_int(where, name, getattr(spec, name))
    lay = spec.layout
    for name in ("tp", "pp", "cp", "ep", "etp"):
        _positive_int(f"{where}.layout", name, getattr(lay, name))
    if spec.gpus < spec.reference_gpus and not spec.probe:
        raise AcceptanceError(
            f"{where}: field 'gpus' is {spec.gpus}, below the reference's {spec.reference_gpus} "
            "(the layout may change, never with fewer GPUs)"
        )
    if spec.gpus % lay.model_parallel():
        raise AcceptanceError(
            f"{where}: field 'layout': TP{lay.tp} × PP{lay.pp} × CP{lay.cp} = {lay.model_parallel()} "
            f"does not divide gpus={spec.gpus}"
        )
    expert_group = lay.pp * lay.ep * lay.etp
    if spec.gpus % expert_group:
        raise AcceptanceError(
            f"{where}: field 'layout': PP{lay.pp} × EP{lay.ep} × ETP{lay.etp} = {expert_group} "
            f"does not divide gpus={spec.gpus}"
        )
    per_step = spec.micro_batch_size * spec.data_parallel
    if spec.global_batch_size % per_step:
        raise AcceptanceError(
            f"{where}: field 'global_batch_size' {spec.global_batch_size} is not divisible by "
            f"micro_batch_size × data-parallel size = {spec.micro_batch_size} × {spec.data_parallel}"
        )
    if lay.sp and lay.tp == 1:
        raise AcceptanceError(f"{where}: field 'layout.sp' needs tp > 1")
    if lay.vp is not None:
        _positive_int(f"{where}.layout", "vp", lay.vp)
        if lay.pp == 1:
            raise AcceptanceError(f"{where}: field 'layout.vp' (virtual pipeline stages) needs pp > 1")
    if not 0 < spec.lr.min <= spec.lr.max:
        raise AcceptanceError(f"{where}: field 'lr': need 0 < min <= max, got {spec.lr}")
    if not 0 <= spec.lr.warmup_steps < spec.max_steps:
        raise AcceptanceError(f"{where}: field 'lr.warmup_steps' must be below max_steps")


def parse_model(name: str, entry: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> ModelSpec:
    merged = {**defaults, **entry}
    data = dict(merged)
    data["layout"] = _build(Layout, f"{where}.layout", merged.get("layout", {}))
    data["lr"] = _build(LRSchedule, f"{where}.lr", merged.get("lr"))
    data["data"] = _build(DataSpec, f"{where}.data", merged.get("data"))
    data["overrides"] = dict(merged.get("overrides") or {})
    data["markers"] = tuple(str(m) for m in merged.get("markers") or ())
    spec = _build(ModelSpec, where, {"name": name, **data})
    _check(spec, where)
    return spec


def parse_layout(text: str, base: Layout) -> Layout:
    """``tp=2,pp=1,sp=true`` over ``base``: the form the command line and the pytest options take."""
    changes: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in {f.name for f in fields(Layout)}:
            raise AcceptanceError(f"layout '{text}': expected KEY=VALUE with KEY in tp, pp, cp, ep, etp, vp, sp")
        if key in changes:
            raise AcceptanceError(f"layout '{text}': {key} given twice")
        if key == "sp":
            if value.lower() not in {"true", "false", "1", "0"}:
                raise AcceptanceError(f"layout '{text}': sp takes true or false")
            changes[key] = value.lower() in {"true", "1"}
        else:
            try:
                changes[key] = int(value)
            except ValueError:
                raise AcceptanceError(f"layout '{text}': {key} takes an integer, got {value!r}") from None
    return replace(base, **changes)


def load_matrix(path: Path | None = None) -> dict[str, ModelSpec]:
    """Every model in the matrix, in file order; any violation raises an error naming the model and field."""
    path = path or default_path()
    doc = yamlio.load(path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), Mapping):
        raise AcceptanceError(f"{path}: expected a top-level 'models' mapping")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise AcceptanceError(f"{path}: 'defaults' must be a mapping")
    return {
        str(name): parse_model(str(name), entry or {}, defaults, f"{path}: models.{name}")
        for name, entry in doc["models"].items()
    }


def get_model(name: str, path: Path | None = None) -> ModelSpec:
    matrix = load_matrix(path)
    if name not in matrix:
        raise AcceptanceError(f"unknown model '{name}'; the matrix has: {', '.join(matrix)}")
    return matrix[name]
