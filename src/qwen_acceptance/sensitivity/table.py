"""Train every variant of the catalogue through the same launcher, judge each log with exactly the suite's checks,
and tabulate detection. Every variant changes the configuration, so conformance names each of them; a broken
kernel would not show there, so detection is judged by the loss checks alone and conformance is a column of its
own, and so is throughput (a layout or micro-batch variant legitimately moves it; no numerics fault is judged by
speed). A variant that crashes or needs more GPUs than are here is a row that says so, and the table is rewritten
after every variant, so a matrix cut short keeps what it measured. Logs trained elsewhere (or by an earlier matrix)
are tabulated the same way (``tabulate_logs``), and ``changed_verdicts`` says where today's checks judge a recorded
table differently: what CI uses to keep every detection for good."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from qwen_acceptance import models, yamlio
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import baselines, conformance, logparse, metrics, verdict
from qwen_acceptance.judge.logparse import TrainingLog
from qwen_acceptance.run import plan, reference, topology
from qwen_acceptance.run.monitor import INTERRUPTED, Limits, Outcome
from qwen_acceptance.run.plan import DataChoice, Plan
from qwen_acceptance.sensitivity.faults import Variant

COMPLETED = ("final_step_reached", "loss_finite")
LOSS = ("final_loss_within_tolerance", "loss_curve_within_band", "loss_curve_correlates")
NUMERIC = (*LOSS, "throughput_within_band")


@dataclass
class Row:
    variant: str
    kind: str
    why: str
    status: str  # judged, crashed, skipped, interrupted (the matrix was stopped)
    reason: str = ""
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # check name -> passed, detail, values
    conforms: bool | None = None
    differences: list[str] = field(default_factory=list)  # from the reference configuration (every variant has some)
    deviations: list[str] = field(default_factory=list)  # from the variant's own: the fault never reached the run
    log: str | None = None
    shared: bool = False  # ran beside other variants on the same GPUs: its throughput is not judged

    @property
    def detected(self) -> bool | None:
        """Failed by the loss checks (or never completed cleanly); None when not judged, or when the log is not the
        variant's run (a fault that never reached the run is neither caught nor missed)."""
        if self.status != "judged" or self.deviations:
            return None
        return not all(self.checks[n]["passed"] for n in (*COMPLETED, *LOSS))

    @property
    def outcome(self) -> str:
        if self.status != "judged":
            return self.status
        if self.deviations:
            return "not applied"
        if self.kind == "honest":
            return "false alarm" if self.detected else "passed"
        return "caught" if self.detected else "missed"


def judge(
    log: TrainingLog, base: models.ModelSpec, run: models.ModelSpec, entry: baselines.Baseline, where: Path
) -> dict[str, verdict.Check]:
    """Exactly the checks the pytest suite runs, against the base model's baseline."""
    checks = [verdict.check_final_step(log, base.final_step), verdict.check_finite_loss(log)]
    numeric: dict[str, Callable[[], verdict.Check]] = {
        "final_loss_within_tolerance": lambda: verdict.check_final_loss(log, base, entry),
        "loss_curve_within_band": lambda: verdict.check_curve_band(log, entry, where),
        "loss_curve_correlates": lambda: verdict.check_curve_correlation(log, entry, where),
        "throughput_within_band": lambda: verdict.check_throughput(metrics.run_throughput(log, run), entry, where),
    }
    for name, make in numeric.items():
        try:
            checks.append(make())
        except AcceptanceError as exc:  # e.g. no loss at the final step: that check fails, naming why
            checks.append(verdict.Check(name, False, str(exc)))
    return {c.name: c for c in checks}


def _cell(check: dict[str, Any] | None) -> str:
    if check is None:
        return "—"
    values = check.get("values") or {}
    number = next(
        (
            f"{values[k]:+.1f}%"
            for k in ("loss_delta_pct", "curve_worst_deviation_pct", "throughput_change_pct")
            if k in values
        ),
        None,
    )
    if number is None and "curve_correlation" in values:
        number = f"{values['curve_correlation']:.4f}"
    return f"{'pass' if check['passed'] else '**FAIL**'} {number or ''}".strip()


def markdown(model: str, rows: list[Row]) -> str:
    head = (
        "| variant | kind | completed | final loss | curve band | correlation | throughput | conformance | "
        "outcome |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        if r.status != "judged":
            lines.append(f"| {r.variant} | {r.kind} | {r.status}: {r.reason} | — | — | — | — | — | {r.outcome} |")
            continue
        done = all(r.checks[n]["passed"] for n in COMPLETED)
        lines.append(
            f"| {r.variant} | {r.kind} | {'yes' if done else '**no**'} | "
            + " | ".join("shared GPUs" if r.shared and n not in LOSS else _cell(r.checks.get(n)) for n in NUMERIC)
            + f" | {'follows' if r.conforms else 'differs'} | "
            + (f"**not applied**: {r.deviations[0]} |" if r.deviations else f"{r.outcome} |")
        )
    return (
        f"# Sensitivity of the suite's checks: {model}\n\n"
        + head
        + "\n".join(lines)
        + "\n\nOutcome: the loss checks and completion judge detection; throughput and conformance (to the reference) "
        "are reported. A log that contradicts its own variant's configuration is *not applied*: neither caught nor "
        "missed.\n"
    )


def write(out: Path, model: str, rows: list[Row]) -> None:
    yamlio.write_atomic(out / "table.md", markdown(model, rows))
    data = [{**asdict(r), "detected": r.detected, "outcome": r.outcome} for r in rows]
    yamlio.write_atomic(out / "table.json", json.dumps({"model": model, "rows": data}, indent=1) + "\n")


# --- running ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """Everything a variant's run shares with the others. ``jobs`` > 1 runs that many variants at once on the same
    GPUs (a smoke model uses a sliver of an H200, and start-up dominates its run): their throughput is then not
    judged."""

    runs_dir: Path
    data: DataChoice
    baselines_path: Path
    limits: Limits = Limits()
    models_file: Path | None = None
    te: str = "auto"
    attention: str = "auto"
    jobs: int = 1


Execute = Callable[[Plan, Limits, TextIO | None, threading.Event], Outcome]


def execute_plan(the_plan: Plan, limits: Limits, progress: TextIO | None, stop: threading.Event) -> Outcome:
    return plan.execute(the_plan, limits=limits, progress=progress, stop=stop)


def run_matrix(
    base: models.ModelSpec,
    variants: list[Variant],
    out: Path,
    setup: Setup,
    *,
    progress: TextIO | None = sys.stderr,
    execute: Execute = execute_plan,
    visible_gpus: int | None = None,
) -> list[Row]:
    """Train and judge every variant, ``setup.jobs`` at a time, rewriting ``out``/table.md and table.json (in
    catalogue order) as each one ends. On Ctrl-C the running variants are stopped and written before it propagates;
    on any other error they run to their end first."""
    entry = baselines.require(baselines.load(setup.baselines_path), base.name, setup.baselines_path)
    here = topology.visible_gpus() if visible_gpus is None else visible_gpus
    (out / "logs").mkdir(parents=True, exist_ok=True)
    shared = setup.jobs > 1
    done: dict[int, Row] = {}
    stop = threading.Event()

    def finish(number: int, row: Row) -> None:
        done[number] = row
        write(out, base.name, [done[k] for k in sorted(done)])
        if progress:
            print(
                f"[sensitivity] {row.variant}: {row.outcome}"
                + (f" ({row.reason})" if row.reason else "")
                + (f"; {len(done)} of {len(variants)} done" if shared else ""),
                file=progress,
                flush=True,
            )

    def train(variant: Variant, spec: models.ModelSpec, the_plan: Plan) -> Row:
        outcome = execute(the_plan, setup.limits, None if shared else progress, stop)
        row = Row(variant.name, variant.kind, variant.why, "judged", shared=shared)
        if outcome.log_path.is_file():
            row.log = str(Path("logs") / f"{variant.name}.log")
            shutil.copyfile(outcome.log_path, out / row.log)
        if not outcome.ok and not outcome.log.steps:
            row.status, row.reason = "crashed", outcome.failure().splitlines()[0]
        else:
            _judge_into(row, outcome.log, base, spec, entry, setup.baselines_path)
            row.reason = "" if outcome.ok else outcome.failure().splitlines()[0]
            if outcome.abort_reason == INTERRUPTED:  # stopped by the matrix, not by anything it trained
                row.status = "interrupted"
        return row

    running: dict[Future[Row], int] = {}

    def collect(when: str) -> None:
        finished, _ = wait(running, return_when=when)
        for future in sorted(finished, key=running.__getitem__):
            finish(running.pop(future), future.result())

    with ThreadPoolExecutor(max_workers=setup.jobs) as pool:
        try:
            for number, variant in enumerate(variants, 1):
                spec = variant.spec(base)
                if spec.gpus > here:
                    finish(
                        number,
                        Row(variant.name, variant.kind, variant.why, "skipped", f"needs {spec.gpus} GPUs, {here} here"),
                    )
                    continue
                while len(running) >= setup.jobs:
                    collect(FIRST_COMPLETED)
                if progress:
                    print(
                        f"[sensitivity] {number}/{len(variants)} {variant.name} ({variant.kind}): {variant.why}",
                        file=progress,
                        flush=True,
                    )
                try:
                    the_plan = plan.prepare(
                        spec,
                        runs_dir=setup.runs_dir / variant.name,
                        data=replace(setup.data, append_eod=variant.append_eod, data_tokenizer=variant.data_tokenizer),
                        models_file=setup.models_file,
                        te=setup.te,
                        attention=variant.attention or setup.attention,
                    )
                except AcceptanceError as exc:  # e.g. its data cannot be built here: that row says so, the rest run
                    finish(number, Row(variant.name, variant.kind, variant.why, "crashed", f"not started: {exc}"))
                    continue
                running[pool.submit(train, variant, spec, the_plan)] = number
            while running:
                collect(FIRST_COMPLETED)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):  # stop the others too; any other error lets them finish
                stop.set()
            for future in list(running):  # each is written as it ran (stopped on the event, or to its end)
                if future.exception() is None:
                    finish(running.pop(future), future.result())
            raise
    return [done[k] for k in sorted(done)]


def _judge_into(
    row: Row, log: TrainingLog, base: models.ModelSpec, spec: models.ModelSpec, entry: baselines.Baseline, where: Path
) -> None:
    checks = judge(log, base, spec, entry, where)
    if row.shared:
        del checks["throughput_within_band"]
    row.checks = {n: {"passed": c.passed, "detail": c.detail, "values": dict(c.values)} for n, c in checks.items()}
    result = conformance.check(log, base, reference.expected(base))
    row.conforms, row.differences = result.conforms, list(result.differences)
    row.deviations = list(conformance.check(log, spec, reference.expected(spec), asked=True).differences)


def tabulate_logs(
    base: models.ModelSpec,
    logs: list[tuple[Variant, Path]],
    out: Path,
    baselines_path: Path,
    *,
    shared: bool = False,
    progress: TextIO | None = sys.stderr,
) -> list[Row]:
    """Judge recorded logs of variants with today's checks, exactly as a trained matrix is judged; the table names
    each log relative to itself (nothing is copied). ``shared``: they were trained side by side on the same GPUs,
    so their throughput is not judged."""
    entry = baselines.require(baselines.load(baselines_path), base.name, baselines_path)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for variant, path in logs:
        row = Row(variant.name, variant.kind, variant.why, "judged", log=os.path.relpath(path, out), shared=shared)
        log = logparse.parse_file(path)
        if not log.steps:
            raise AcceptanceError(f"{path}: no training step in this log (variant {variant.name})")
        _judge_into(row, log, base, variant.spec(base), entry, baselines_path)
        rows.append(row)
        write(out, base.name, rows)
        if progress:
            print(f"[sensitivity] {row.variant}: {row.outcome}", file=progress, flush=True)
    return rows


def recorded(table_dir: Path) -> tuple[str, list[dict[str, Any]]]:
    """A recorded table's model and rows (``table.json``); each judged row's log (relative to the table's folder)
    must be there."""
    path = table_dir / "table.json"
    doc = yamlio.load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or not isinstance(doc.get("model"), str):
        raise AcceptanceError(f"{path}: not a sensitivity table (expected 'model' and 'rows')")
    rows = []
    for number, row in enumerate(doc["rows"], 1):
        if not isinstance(row, dict) or not isinstance(row.get("variant"), str):
            raise AcceptanceError(f"{path}: rows[{number}]: expected a mapping with a 'variant'")
        if row.get("status") == "judged" and not (table_dir / str(row.get("log"))).is_file():
            raise AcceptanceError(f"{path}: rows[{number}] ({row['variant']}): log {row.get('log')!r} not found")
        rows.append(row)
    return doc["model"], rows


def changed_verdicts(before: list[dict[str, Any]], after: list[Row]) -> list[str]:
    """Every check (and outcome) whose verdict on the same log differs between a recorded table and today's."""
    now = {r.variant: r for r in after}
    changes = []
    for old in before:
        new = now.get(old["variant"])
        if new is None:
            continue
        for name, check in old.get("checks", {}).items():
            passed = new.checks.get(name, {}).get("passed")
            if passed != check.get("passed"):
                changes.append(f"{old['variant']}: {name} {_word(check.get('passed'))} -> {_word(passed)}")
        if old.get("outcome") != new.outcome:
            changes.append(f"{old['variant']}: outcome {old.get('outcome')} -> {new.outcome}")
    return changes


def _word(passed: bool | None) -> str:
    return "absent" if passed is None else "pass" if passed else "FAIL"
