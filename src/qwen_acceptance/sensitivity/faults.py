"""The fault catalogue (``faults.yaml``): named variants of a smoke model's run. Honest ones are what a healthy
stack may produce (another seed, another micro batch or attention, 2 GPUs): the loss checks must pass them.
Broken ones stand for the regressions a new cluster or container brings (learning rate ×3, warm-up 0, fp16, ...):
the suite should fail them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from qwen_acceptance import models, yamlio
from qwen_acceptance.errors import AcceptanceError

KINDS = ("honest", "broken")


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str
    why: str
    seed: int | None = None
    micro_batch_size: int | None = None
    warmup_steps: int | None = None
    lr_scale: float | None = None
    gpus: int | None = None
    layout: str | None = None
    attention: str | None = None
    append_eod: bool = False
    data_tokenizer: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def spec(self, base: models.ModelSpec) -> models.ModelSpec:
        """The model's run with this variant's changes: always a probe (it may change what the reference fixes)."""
        changes: dict[str, Any] = {
            k: getattr(self, k) for k in ("seed", "micro_batch_size", "gpus") if getattr(self, k) is not None
        }
        if self.layout is not None:
            changes["layout"] = models.parse_layout(self.layout, base.layout)
        lr = base.lr
        if self.lr_scale is not None:
            lr = replace(lr, max=lr.max * self.lr_scale, min=lr.min * self.lr_scale)
        if self.warmup_steps is not None:
            lr = replace(lr, warmup_steps=self.warmup_steps)
        if self.overrides:
            changes["overrides"] = {**base.overrides, **self.overrides}
        return base.with_changes(probe=True, lr=lr, **changes)


def default_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("faults.yaml")))


def catalogue(path: Path | None = None) -> dict[str, Variant]:
    """Every variant in the file; a bad one is an error naming the file, the variant and the field."""
    path = path or default_path()
    doc = yamlio.load(path)
    entries = doc.get("variants") if isinstance(doc, Mapping) else None
    if not isinstance(entries, Mapping) or not entries:
        raise AcceptanceError(f"{path}: expected a non-empty top-level 'variants' mapping")
    known = {f.name for f in fields(Variant)} - {"name"}
    found = {}
    for name, entry in entries.items():
        where = f"{path}: variants.{name}"
        if not isinstance(entry, Mapping):
            raise AcceptanceError(f"{where}: must be a mapping")
        if unknown := sorted(set(entry) - known):
            raise AcceptanceError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
        if entry.get("kind") not in KINDS:
            raise AcceptanceError(f"{where}: field 'kind' must be one of {', '.join(KINDS)}")
        if not isinstance(entry.get("why"), str):
            raise AcceptanceError(f"{where}: field 'why' must say what the variant stands for")
        found[str(name)] = Variant(name=str(name), **{k: dict(v) if k == "overrides" else v for k, v in entry.items()})
    return found


def lr_variant(scale: float) -> Variant:
    """A variant that only scales the learning rate: what the detection-power bisection tries."""
    if not scale > 0:
        raise AcceptanceError(f"--lr-scale {scale}: must be positive")
    return Variant(name=f"lr_x{scale:g}", kind="broken", why=f"learning rate ×{scale:g}", lr_scale=scale)


def named(name: str, path: Path | None = None) -> Variant:
    """A catalogue variant by name, or ``lr_xS`` (the bisection's learning-rate variants, which no catalogue lists)."""
    table = catalogue(path)
    if name in table:
        return table[name]
    if name.startswith("lr_x"):
        try:
            return lr_variant(float(name[len("lr_x") :]))
        except ValueError:
            pass
    raise AcceptanceError(f"unknown variant {name!r}; the catalogue has {', '.join(table)} (and lr_xS for any S)")


def select(names: Iterable[str] | None, scales: Iterable[float], path: Path | None = None) -> list[Variant]:
    table = catalogue(path)
    names = list(names or ([] if scales else table))
    if unknown := [n for n in names if n not in table]:
        raise AcceptanceError(
            f"--faults: unknown variant(s) {', '.join(unknown)}; the catalogue has {', '.join(table)}"
        )
    return [table[n] for n in names] + [lr_variant(s) for s in scales]
