"""The suite's detection power in one number per side: the learning-rate multipliers, above and below 1, from which
the suite fails a smoke model's run. Each round trains ``jobs`` multipliers at once (through ``table.run_matrix``),
spaced evenly in log scale inside each side's bracket (the multiplier the suite still passes, the one it fails), so
a bracket narrows by a factor of (points per side + 1) a round instead of 2. Starts from ×1 (the baseline's own
run, passed by definition) and the catalogue's ×3 and ×0.3."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from qwen_acceptance import models, yamlio
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.run import topology
from qwen_acceptance.sensitivity import faults, table

START = {"above": 3.0, "below": 0.3}


@dataclass
class Side:
    """One side's bracket: the suite passes the run at ``passes`` and fails it at ``fails`` (None: not yet seen)."""

    name: str
    passes: float = 1.0
    fails: float | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)  # scale, outcome, deltas, round

    def candidates(self, count: int) -> list[float]:
        """``count`` multipliers evenly spaced in log scale strictly inside the bracket."""
        assert self.fails is not None
        lo, hi = math.log(self.passes), math.log(self.fails)
        return [round(math.exp(lo + (hi - lo) * k / (count + 1)), 4) for k in range(1, count + 1)]

    def update(self, results: dict[float, bool]) -> None:
        """Narrow to the failing multiplier nearest 1 and the passing one nearest it from the 1 side; a run that
        passes further from 1 than one that failed is noise around the threshold, kept in the trials only."""
        failing = [s for s, caught in results.items() if caught]
        if failing:
            self.fails = min([*failing, *([self.fails] if self.fails else [])], key=_distance)
        limit = _distance(self.fails) if self.fails is not None else math.inf
        passing = [s for s, caught in results.items() if not caught and _distance(s) < limit]
        self.passes = max([self.passes, *passing], key=_distance)


def _distance(scale: float) -> float:
    """How far a multiplier is from 1, alike for ×s and ×1/s."""
    return abs(math.log(scale))


def _summary(row: table.Row) -> dict[str, Any]:
    values = {k: v for c in row.checks.values() for k, v in c.get("values", {}).items()}
    return {
        "outcome": row.outcome,
        "failed_by": [n for n in (*table.COMPLETED, *table.LOSS) if n in row.checks and not row.checks[n]["passed"]],
        "loss_delta_pct": values.get("loss_delta_pct"),
        "curve_worst_deviation_pct": values.get("curve_worst_deviation_pct"),
        "curve_correlation": values.get("curve_correlation"),
        "reason": row.reason,
    }


def run(
    base: models.ModelSpec,
    out: Path,
    setup: table.Setup,
    *,
    rounds: int,
    progress: TextIO | None = sys.stderr,
    execute: table.Execute = table.execute_plan,
    visible_gpus: int | None = None,
) -> list[Side]:
    """Round 0 trains ×3 and ×0.3; each later round splits every bracket it has. Writes ``out``/bisect.md and
    bisect.json after every round, each round's table under ``out``/round-N/."""
    visible_gpus = topology.visible_gpus() if visible_gpus is None else visible_gpus  # once, not every round
    sides = [Side(name) for name in START]
    for number in range(rounds + 1):
        plan: dict[float, Side]
        if number == 0:
            plan = {START[s.name]: s for s in sides}
        else:
            open_sides = [s for s in sides if s.fails is not None]
            per_side = max(1, setup.jobs // max(1, len(open_sides)))
            plan = {scale: s for s in open_sides for scale in s.candidates(per_side)}
        if not plan:
            break
        if progress:
            tried = ", ".join(f"×{s:g}" for s in sorted(plan))
            print(f"[bisect] round {number}/{rounds}: {tried}", file=progress, flush=True)
        variants = [faults.lr_variant(scale) for scale in plan]
        rows = table.run_matrix(
            base,
            variants,
            out / f"round-{number}",
            setup,
            progress=progress,
            execute=execute,
            visible_gpus=visible_gpus,
        )
        results: dict[str, dict[float, bool]] = {}
        for scale, row in zip(plan, rows, strict=True):
            if row.deviations:
                raise AcceptanceError(
                    f"{out / f'round-{number}'}: {row.variant} did not reach its run ({row.deviations[0]}): no "
                    "detection power can be read from it"
                )
            caught = row.detected is not False  # a crash fails the run as surely as a check does
            plan[scale].trials.append({"scale": scale, "round": number, **_summary(row)})
            results.setdefault(plan[scale].name, {})[scale] = caught
        for side in sides:
            if side.name in results:
                side.update(results[side.name])
        write(out, base.name, sides)
    return sides


def markdown(model: str, sides: list[Side]) -> str:
    lines = [f"# Detection power on {model}: the learning-rate multiplier the suite first fails\n"]
    for side in sides:
        if side.fails is None:
            lines.append(f"- {side.name} 1: not bracketed: the suite passed ×{side.passes:g}, the furthest tried")
        else:
            lines.append(f"- {side.name} 1: passes ×{side.passes:g}, fails ×{side.fails:g}")
    lines.append(
        "\n| side | round | multiplier | outcome | failed by | final loss | curve band (worst) | correlation |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for side in sides:
        for t in sorted(side.trials, key=lambda t: t["scale"]):
            failed_by = ", ".join(t["failed_by"]) or "—"
            lines.append(
                f"| {side.name} | {t['round']} | ×{t['scale']:g} | {t['outcome']} | {failed_by} | "
                + " | ".join(_pct(t[k]) for k in ("loss_delta_pct", "curve_worst_deviation_pct"))
                + f" | {'—' if t['curve_correlation'] is None else format(t['curve_correlation'], '.4f')} |"
            )
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}%"


def write(out: Path, model: str, sides: list[Side]) -> None:
    yamlio.write_atomic(out / "bisect.md", markdown(model, sides))
    data = {"model": model, "sides": [vars(s) for s in sides]}
    yamlio.write_atomic(out / "bisect.json", json.dumps(data, indent=1) + "\n")
