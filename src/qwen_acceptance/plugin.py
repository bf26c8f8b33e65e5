"""pytest plugin: options, per-model parametrization and markers, the session-scoped run fixture, and the
``--baseline-update`` flow. The judging itself lives in the library (metrics, verdict, baselines)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterator

import pytest

from . import baselines, conformance, curves, failfast, launch, logparse, metrics, models, report, verdict
from .errors import AcceptanceError
from .logparse import TrainingLog

STASH = pytest.StashKey["AcceptanceSession"]()


@dataclass(frozen=True)
class RunResult:
    """One model's training run, recorded or live, as the acceptance tests see it."""

    spec: models.ModelSpec
    log: TrainingLog
    log_path: Path
    origin: str  # "recorded log" or "live run"
    report_dir: Path  # where report.write puts the run report at the end of the session


@dataclass
class AcceptanceSession:
    matrix: dict[str, models.ModelSpec]
    baselines_path: Path
    update: bool
    recorded_logs: dict[str, Path]
    logs_dir: Path | None
    options: Any  # pytest's option namespace: the launch options (launch.OPTIONS)
    models_file: Path | None = None
    capture: Any = None  # pytest's capture manager: a live run's progress goes to the terminal, not into a test's
    runs: dict[str, RunResult] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model: the numbers the tests judged
    diffs: list[str] = field(default_factory=list)
    report_errors: list[str] = field(default_factory=list)
    conformance: dict[str, conformance.Conformance] = field(default_factory=dict)

    def recorded_log(self, model: str) -> Path | None:
        if model in self.recorded_logs:
            return self.recorded_logs[model]
        if self.logs_dir is not None and (candidate := self.logs_dir / f"{model}.log").is_file():
            return candidate
        return None

    def obtain_run(self, spec: models.ModelSpec) -> RunResult:
        """The run for ``spec``: a recorded log if one was given, else a live run; skipped, with the reason, when
        neither is possible here."""
        if spec.name not in self.runs:
            path = self.recorded_log(spec.name)
            if path is not None:
                log = logparse.parse_file(path)
                log.require_steps()
                stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
                folder = Path(self.options.runs_dir) / spec.name / f"recorded-{stamp}-{os.getpid()}" / "report"
                self.runs[spec.name] = RunResult(spec, log, path, "recorded log", folder.resolve())
            else:
                self.runs[spec.name] = self._live_run(spec)
        return self.runs[spec.name]

    def _live_run(self, spec: models.ModelSpec) -> RunResult:
        topology = launch.topology_from_env(spec)
        here = launch.visible_gpus()
        if here < topology.gpus_per_node:
            where = (f"{topology.gpus_per_node} GPUs on each of {topology.nnodes} nodes" if topology.nnodes > 1 else
                     f"{spec.gpus} GPUs (several nodes: set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, "
                     "GPUS_PER_NODE on each, or run under Slurm)" if spec.gpus > 8 else f"{spec.gpus} GPUs")
            pytest.skip(f"{spec.name}: no recorded log (--from-log {spec.name}=PATH or --logs-dir DIR), and a live "
                        f"run needs {where}; this machine has {here}")
        if os.environ.get("PYTEST_XDIST_WORKER"):
            pytest.fail(f"{spec.name}: live training cannot run under pytest-xdist; run without -n", pytrace=False)
        plan = launch.plan(spec, runs_dir=self.options.runs_dir, data=launch.data_choice(self.options),
                           models_file=self.models_file, te=self.options.te, attention=self.options.attention)
        with self._uncaptured():
            watch = self._watch(spec)
            outcome = launch.execute(plan, limits=launch.limits(self.options), progress=sys.__stderr__, watch=watch)
        if watch is not None and watch.stopped is not None:
            pytest.fail(f"{spec.name}: {watch.stopped}; log: {outcome.log_path}; "
                        f"{self._stopped_report(spec, outcome, plan.run_dir)}", pytrace=False)
        if not outcome.ok:
            pytest.fail(f"{spec.name}: {outcome.failure()}", pytrace=False)
        if not topology.judges:
            pytest.skip(f"{spec.name}: node {topology.node_rank}'s ranks exited cleanly; the node of global rank 0 "
                        "judges the loss")
        return RunResult(spec, outcome.log, outcome.log_path, "live run", plan.run_dir / "report")

    def _uncaptured(self) -> ContextManager[None]:
        return self.capture.global_and_fixture_disabled() if self.capture is not None else contextlib.nullcontext()

    def _watch(self, spec: models.ModelSpec) -> failfast.Watch | None:
        """What the live line compares the run with, and whether fail-fast may stop it; when it may not although
        asked to, it says why, once."""
        entry, problem = None, f"{self.baselines_path}: no such file"
        try:
            if self.baselines_path.is_file():
                entry, problem = baselines.load(self.baselines_path).get(spec.name), None
        except AcceptanceError as exc:  # the judging tests report the file; the run goes on without a baseline
            problem = str(exc)
        stop = self.options.fail_fast and not self.update and entry is not None and entry.curve is not None
        if self.options.fail_fast and not stop:
            why = ("--baseline-update records this run as the baseline" if self.update else
                   problem or f"{self.baselines_path} has no loss curve for {spec.name}")
            print(f"[{spec.name}] fail-fast off: {why}", file=sys.__stderr__, flush=True)
        return None if entry is None else failfast.Watch(entry, spec, stop=stop)

    def _stopped_report(self, spec: models.ModelSpec, outcome: launch.Outcome, run_dir: Path) -> str:
        """A run that fail-fast stopped still gets its report, up to the step where it stopped."""
        try:
            summary = report.write(run_dir / "report", spec=spec, log=outcome.log, log_path=outcome.log_path,
                                   origin="live run", baseline=baselines.load(self.baselines_path).get(spec.name),
                                   results={"stopped": outcome.abort_reason})
        except (AcceptanceError, OSError) as exc:
            return f"no report written: {exc}"
        return f"report: {summary}"

    def _record(self, run: RunResult, record_property: Any, **values: Any) -> None:
        """Numbers for the run report and, as JUnit XML properties, for CI dashboards."""
        self.results.setdefault(run.spec.name, {}).update(values)
        for key, value in {"model": run.spec.name, "gpus": run.spec.gpus, "layout": run.spec.layout.describe(),
                           "report": str(run.report_dir), **values}.items():
            record_property(key, value)

    def _baseline(self, model: str) -> baselines.Baseline:
        if self.update:  # its file changes as the session goes: judging against it would depend on test order
            pytest.skip(f"{model}: --baseline-update records baselines in this session; rerun without it to judge")
        return baselines.require(baselines.load(self.baselines_path), model, self.baselines_path)

    def conformance_of(self, run: RunResult) -> conformance.Conformance:
        """The run against its model's reference configuration, checked once per session."""
        name = run.spec.name
        if name not in self.conformance:
            self.conformance[name] = conformance.check(run.log, run.spec, conformance.expected_config(run.spec))
        return self.conformance[name]

    def judge_conformance(self, run: RunResult, record_property: Any) -> conformance.Conformance:
        result = self.conformance_of(run)
        self._record(run, record_property, conforms=result.conforms,
                     conformance_differences=list(result.differences),
                     conformance_unverified=list(result.unverified))
        return result

    def _judged(self, run: RunResult, record_property: Any, check: verdict.Check) -> verdict.Check:
        self._record(run, record_property, **check.values)
        return check

    def judge_final_loss(self, run: RunResult, record_property: Any) -> verdict.Check:
        """The verdict of record."""
        return self._judged(run, record_property,
                            verdict.check_final_loss(run.log, run.spec, self._baseline(run.spec.name)))

    def judge_curve_band(self, run: RunResult, record_property: Any) -> verdict.Check:
        return self._judged(run, record_property, verdict.check_curve_band(
            run.log, self._baseline(run.spec.name), self.baselines_path))

    def judge_curve_correlation(self, run: RunResult, record_property: Any) -> verdict.Check:
        return self._judged(run, record_property, verdict.check_curve_correlation(
            run.log, self._baseline(run.spec.name), self.baselines_path))

    def judge_throughput(self, run: RunResult, record_property: Any) -> verdict.Check:
        return self._judged(run, record_property, verdict.check_throughput(
            run.log, run.spec, self._baseline(run.spec.name), self.baselines_path))

    def update_baseline(self, run: RunResult) -> None:
        """--baseline-update: record a complete clean run that follows the reference, then fail on purpose."""
        spec, log = run.spec, run.log
        problems = [c.detail for c in (verdict.check_final_step(log, spec.final_step), verdict.check_finite_loss(log))
                    if not c.passed]
        if problems:
            pytest.fail(f"{spec.name}: not updating the baseline from an incomplete or unclean run: "
                        + "; ".join(problems), pytrace=False)
        conforms = self.conformance_of(run)
        if not conforms.conforms:
            pytest.fail(f"{spec.name}: not updating the baseline from a run that differs from the reference "
                        "configuration: " + "; ".join(conforms.differences), pytrace=False)
        if conformance.gpus_of(log) is None:
            pytest.fail(f"{spec.name}: not updating the baseline: the log does not show its GPU count (NeMo's "
                        "'All ... group ranks' lines or the suite's resolved line); give the whole log",
                        pytrace=False)
        try:
            tps: float | None = metrics.throughput(log, seq_length=spec.seq_length, gpus=spec.gpus).mean
        except AcceptanceError:
            tps = None
        update = baselines.Update(metrics.final_loss(log, spec.final_step), tps, provenance(run, conforms),
                                  curves.sparse(log))
        diff = baselines.apply_updates(self.baselines_path, {spec.name: update})
        self.diffs.append(diff)
        pytest.fail(
            f"{spec.name}: baseline updated in {self.baselines_path} (a session that updates is never green; "
            f"rerun without --baseline-update to judge against it)\n{diff}",
            pytrace=False,
        )

    def record_throughput(self, run: RunResult, benchmark: Any) -> metrics.Throughput:
        """Give pytest-benchmark the steady window's real step times as its rounds."""
        spec = run.spec
        tp = metrics.throughput(run.log, seq_length=spec.seq_length, gpus=spec.gpus)
        benchmark.extra_info.update(
            model=spec.name,
            tokens_per_sec_per_gpu=tp.mean,
            tokens_per_sec_per_gpu_median=tp.median,
            throughput_steps=tp.steps_used,
            throughput_window=[tp.first_step, tp.last_step],
            throughput_derived=tp.derived,
            gpus=spec.gpus,
            layout=spec.layout.describe(),
            global_batch_size=spec.global_batch_size,
            seq_length=spec.seq_length,
            origin=run.origin,
        )
        if not tp.step_times:
            raise AcceptanceError(f"{run.log_path}: no '{logparse.STEP_TIME}' in the throughput window")
        replay_step_times(benchmark, tp.step_times)
        return tp


class _ReplayClock:
    """A timer whose start/stop pairs measure the recorded step times, one round each."""

    def __init__(self, durations: tuple[float, ...]) -> None:
        self._durations: Iterator[float] = iter(durations)
        self._now = 0.0
        self._started = False

    def __call__(self) -> float:
        if self._started:
            self._now += next(self._durations)
        self._started = not self._started
        return self._now


def replay_step_times(benchmark: Any, durations: tuple[float, ...]) -> None:
    """Run pytest-benchmark's own pedantic path, its clock swapped for the recorded step times, so its statistics,
    --benchmark-json, --benchmark-autosave and --benchmark-compare speak of real training steps."""
    benchmark._timer = _ReplayClock(durations)  # pytest-benchmark reads the timer here when it builds a runner
    benchmark.pedantic(lambda: None, rounds=len(durations), iterations=1, warmup_rounds=0)


def provenance(run: RunResult, conforms: conformance.Conformance) -> dict[str, Any]:
    """Where a baseline came from, as the log tells it, so a later reader can tell whether it still applies."""
    log, resolved = run.log, run.log.resolved
    data = resolved.get("data") or {}
    batches = sorted({int(v) for r in log.ordered() if (v := r.get("global_batch_size")) is not None})
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "origin": run.origin,
        "gpu": log.environment.get("gpu") or log.gpu_name,
        "gpus": conformance.gpus_of(log),
        "layout": resolved.get("layout"),
        "global_batch_size": batches[0] if len(batches) == 1 else data.get("global_batch_size"),
        "seq_length": data.get("seq_length"),
        "max_steps": None if log.planned_last_step is None else log.planned_last_step + 1,
        "seed": resolved.get("seed", data.get("seed")),
        "container": log.environment.get("container"),
        "torch": log.environment.get("torch"),
        "nemo": log.environment.get("nemo"),
        "megatron_core": log.environment.get("megatron_core"),
        "transformer_engine": log.environment.get("transformer_engine"),
        "run_started": log.started,
        "not_verified": list(conforms.unverified),
        "log": str(run.log_path),
        "log_sha256": baselines.log_sha256(run.log_path),
    }


# --- hooks -------------------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qwen-acceptance", "Qwen pretraining acceptance")
    group.addoption("--from-log", action="append", default=[], metavar="MODEL=PATH",
                    help="judge MODEL from this recorded NeMo log instead of training it (repeatable)")
    group.addoption("--logs-dir", type=Path, metavar="DIR",
                    help="directory of recorded logs named MODEL.log")
    group.addoption("--baselines", type=Path, metavar="FILE",
                    help="baselines file (default: baselines.yaml in the rootdir)")
    group.addoption("--baseline-update", action="store_true",
                    help="record the final loss and throughput of complete clean runs as the new baselines")
    group.addoption("--models-file", type=Path, metavar="FILE",
                    help=f"model matrix (default: the packaged models.yaml, or ${models.MODELS_ENV})")
    for flag, kwargs in launch.OPTIONS:
        group.addoption(flag, **kwargs)
    group.addoption("--fail-fast", action=argparse.BooleanOptionalAction, default=True,
                    help="stop a live run whose loss curve has clearly left the baseline's (default: on; never "
                         "under --baseline-update or without a baseline curve)")


def _parse_from_log(values: list[str], matrix: dict[str, models.ModelSpec]) -> dict[str, Path]:
    logs = {}
    for value in values:
        model, sep, path = value.partition("=")
        if not sep or not model or not path:
            raise pytest.UsageError(f"--from-log {value!r}: expected MODEL=PATH")
        if model not in matrix:
            raise pytest.UsageError(f"--from-log {value!r}: unknown model; the matrix has {', '.join(matrix)}")
        if not Path(path).is_file():
            raise pytest.UsageError(f"--from-log {value!r}: {path}: no such log file")
        logs[model] = Path(path)
    return logs


def pytest_configure(config: pytest.Config) -> None:
    try:
        matrix = models.load_matrix(config.getoption("models_file"))
    except AcceptanceError as exc:
        raise pytest.UsageError(str(exc)) from None
    for spec in matrix.values():
        config.addinivalue_line("markers", f"{spec.name}: acceptance run of {spec.recipe} on {spec.gpus} GPUs")
    logs_dir = config.getoption("logs_dir")
    if logs_dir is not None and not logs_dir.is_dir():
        raise pytest.UsageError(f"--logs-dir {logs_dir}: no such directory")
    config.stash[STASH] = AcceptanceSession(
        matrix=matrix,
        baselines_path=config.getoption("baselines") or config.rootpath / "baselines.yaml",
        update=config.getoption("baseline_update"),
        recorded_logs=_parse_from_log(config.getoption("from_log"), matrix),
        logs_dir=logs_dir,
        options=config.option,
        models_file=config.getoption("models_file"),
        capture=config.pluginmanager.getplugin("capturemanager"),
    )


RECORD_TEST = "test_record_baseline"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The baseline-recording test belongs to --baseline-update sessions only."""
    if config.getoption("baseline_update"):
        return
    keep = [item for item in items if getattr(item, "originalname", item.name) != RECORD_TEST]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that takes ``model`` runs once per model in the matrix, marked with the model's name."""
    if "model" not in metafunc.fixturenames:
        return
    matrix = metafunc.config.stash[STASH].matrix
    params = [
        pytest.param(name, id=name, marks=[getattr(pytest.mark, m) for m in (name, *spec.markers)])
        for name, spec in matrix.items()
    ]
    metafunc.parametrize("model", params, scope="session")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Bad input (a corrupt baselines file, a foreign log, a missing curve) is one line naming the file and field,
    not a traceback."""
    outcome = yield
    if call.excinfo is not None and call.excinfo.errisinstance(AcceptanceError):
        outcome.get_result().longrepr = f"qwen-acceptance: {call.excinfo.value}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write each run's report where the run lives (on xdist, in the worker that judged it)."""
    state = session.config.stash.get(STASH, None)
    if state is None or not state.runs:
        return
    try:
        entries = baselines.load(state.baselines_path) if state.baselines_path.is_file() else {}
    except AcceptanceError:
        entries = {}  # the tests already said what is wrong with the file; the reports go without baselines
    for name, run in state.runs.items():
        try:
            report.write(run.report_dir, spec=run.spec, log=run.log, log_path=run.log_path, origin=run.origin,
                         baseline=entries.get(name), results=state.results.get(name, {}))
        except (AcceptanceError, OSError) as exc:
            state.report_errors.append(f"{name}: no report written: {exc}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = config.stash.get(STASH, None)
    if session is None:
        return
    if session.runs:
        terminalreporter.section("qwen-acceptance reports")
        for name, run in session.runs.items():
            terminalreporter.write_line(f"{name}: {run.report_dir / 'summary.md'}")
        for line in session.report_errors:
            terminalreporter.write_line(line, red=True)
    if session.diffs:
        terminalreporter.section("baselines updated")
        for diff in session.diffs:
            terminalreporter.write(diff)


@pytest.fixture(scope="session")
def acceptance(pytestconfig: pytest.Config) -> AcceptanceSession:
    return pytestconfig.stash[STASH]


@pytest.fixture(scope="session")
def training_run(acceptance: AcceptanceSession, model: str) -> RunResult:
    """The model's run, made or read once per session and shared by every test of that model (bad input is
    reported as one line by pytest_runtest_makereport)."""
    return acceptance.obtain_run(acceptance.matrix[model])
