"""A model's run for judging: its recorded log when one is given, else a live run where this machine has the
GPUs, else a reason why neither is possible here (``Unavailable``, which the plugin turns into a skip)."""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import baselines, failfast, logparse, metrics, provenance, report
from qwen_acceptance.judge.conformance import Conformance
from qwen_acceptance.judge.conformance import check as check_conformance
from qwen_acceptance.judge.logparse import TrainingLog
from qwen_acceptance.models import ModelSpec
from qwen_acceptance.run import options, plan, reference, topology

RECORDED, LIVE = "recorded log", "live run"


class Unavailable(AcceptanceError):
    """No run of the model can be had here: no recorded log, and not the GPUs (or not this node's turn) to judge."""


@dataclass(frozen=True)
class RunResult:
    """One model's training run, recorded or live, as the acceptance tests see it."""

    spec: ModelSpec
    log: TrainingLog
    log_path: Path
    origin: str  # RECORDED or LIVE
    report_dir: Path  # where the run report goes at the end of the session

    @functools.cached_property
    def conformance(self) -> Conformance:
        """The run against its model's reference configuration (computed once, shared by the test and the
        baseline update)."""
        return check_conformance(self.log, self.spec, reference.expected(self.spec))

    @functools.cached_property
    def throughput(self) -> metrics.Throughput:
        """The reference-rule throughput (``metrics.run_throughput``); an error naming the line where the log
        cannot give it."""
        return metrics.run_throughput(self.log, self.spec)

    def throughput_if_any(self) -> metrics.Throughput | None:
        """For the report and the baseline, which go on without a throughput."""
        try:
            return self.throughput
        except AcceptanceError:
            return None

    @functools.cached_property
    def provenance(self) -> dict[str, Any]:
        """Where the run came from, as its log tells it (``judge.provenance``)."""
        return provenance.of_run(
            self.log, self.log_path, self.spec, origin=self.origin, unverified=self.conformance.unverified
        )

    def write_report(self, baseline: baselines.Baseline | None, results: dict[str, Any]) -> Path:
        return report.write(
            self.report_dir,
            spec=self.spec,
            log=self.log,
            log_path=self.log_path,
            origin=self.origin,
            baseline=baseline,
            throughput=self.throughput_if_any(),
            provenance=self.provenance,
            results=results,
        )


def recorded(spec: ModelSpec, path: Path, runs_dir: Path) -> RunResult:
    """A recorded log, read and checked to hold training steps; its report goes to a fresh folder of its own."""
    log = logparse.parse_file(path)
    log.require_steps()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = runs_dir / spec.name / f"recorded-{stamp}-{os.getpid()}" / "report"
    return RunResult(spec, log, path, RECORDED, folder.resolve())


@dataclass(frozen=True)
class LiveSettings:
    """What a live run takes from the session: the launch options, the baselines it is watched against, and
    whether it is being recorded as the baseline (then fail-fast is off)."""

    options: Any  # an argparse or pytest option namespace with the LIVE_OPTIONS and fail_fast
    baselines_path: Path
    update: bool
    models_file: Path | None = None
    stream: TextIO | None = None  # the live line and notices (the terminal, past pytest's capture)


def live(spec: ModelSpec, settings: LiveSettings) -> RunResult:
    """Train ``spec`` here: preprocess (cached), torchrun under the monitor, fail on any stop or crash."""
    topo = topology.topology_from_env(spec)
    here = topology.visible_gpus()
    if here < topo.gpus_per_node:
        where = (
            f"{topo.gpus_per_node} GPUs on each of {topo.nnodes} nodes"
            if topo.nnodes > 1
            else f"{spec.gpus} GPUs (several nodes: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, "
            "GPUS_PER_NODE on each, or run under Slurm)"
            if spec.gpus > 8
            else f"{spec.gpus} GPUs"
        )
        raise Unavailable(
            f"{spec.name}: no recorded log (--from-log {spec.name}=PATH or --logs-dir DIR), and a live "
            f"run needs {where}; this machine has {here}"
        )
    if os.environ.get("PYTEST_XDIST_WORKER"):
        raise AcceptanceError(f"{spec.name}: live training cannot run under pytest-xdist; run without -n")
    opts = settings.options
    the_plan = plan.prepare(
        spec,
        runs_dir=opts.runs_dir,
        data=options.data_choice(opts),
        models_file=settings.models_file,
        te=opts.te,
        attention=opts.attention,
    )
    watch = watch_for(spec, settings)
    outcome = plan.execute(the_plan, limits=options.limits_from(opts), progress=settings.stream, watch=watch)
    result = RunResult(spec, outcome.log, outcome.log_path, LIVE, the_plan.run_dir / "report")
    if watch is not None and watch.stopped is not None:
        report_line = _stopped_report(result, settings, watch.stopped)
        raise AcceptanceError(f"{spec.name}: {watch.stopped}; log: {outcome.log_path}; {report_line}")
    if not outcome.ok:
        raise AcceptanceError(f"{spec.name}: {outcome.failure()}")
    if not topo.judges:
        raise Unavailable(
            f"{spec.name}: node {topo.node_rank}'s ranks exited cleanly; the node of global rank 0 judges the loss"
        )
    return result


def _baseline_entry(spec: ModelSpec, path: Path) -> tuple[baselines.Baseline | None, str | None]:
    """The model's baseline entry, or why there is none (a bad file is reported by the judging tests)."""
    if not path.is_file():
        return None, f"{path}: no such file"
    try:
        return baselines.load(path).get(spec.name), None
    except AcceptanceError as exc:
        return None, str(exc)


def watch_for(spec: ModelSpec, settings: LiveSettings) -> failfast.Watch | None:
    """What the live line compares the run with, and whether fail-fast may stop it; when it may not although
    asked to, it says why, once."""
    entry, problem = _baseline_entry(spec, settings.baselines_path)
    asked = settings.options.fail_fast
    stop = asked and not settings.update and entry is not None and entry.curve is not None
    if asked and not stop:
        why = (
            "--baseline-update records this run as the baseline"
            if settings.update
            else problem or f"{settings.baselines_path} has no loss curve for {spec.name}"
        )
        print(f"[{spec.name}] fail-fast off: {why}", file=settings.stream or sys.stderr, flush=True)
    return None if entry is None else failfast.Watch(entry, spec, stop=stop)


def _stopped_report(result: RunResult, settings: LiveSettings, why: str) -> str:
    """A run that fail-fast stopped still gets its report, up to the step where it stopped."""
    entry, _ = _baseline_entry(result.spec, settings.baselines_path)
    try:
        summary = result.write_report(entry, {"stopped": why})
    except (AcceptanceError, OSError) as exc:
        return f"no report written: {exc}"
    return f"report: {summary}"
