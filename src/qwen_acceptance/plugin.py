"""pytest plugin: options, hooks and one-line fixtures over the library. The run comes from ``run.acquire``, every
rule from ``judge.verdict`` (the tests in ``tests/acceptance`` call them), the baseline update from
``judge.record``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qwen_acceptance import models
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import baselines, metrics
from qwen_acceptance.judge.verdict import Check
from qwen_acceptance.run import acquire
from qwen_acceptance.run.acquire import RunResult
from qwen_acceptance.run.options import LIVE_OPTIONS

STASH = pytest.StashKey["AcceptanceSession"]()
RECORD_TEST = "test_record_baseline"


@dataclass
class AcceptanceSession:
    """What one pytest session knows: the matrix, where logs and baselines are, and what it has judged."""

    matrix: dict[str, models.ModelSpec]
    baselines_path: Path
    update: bool
    recorded_logs: dict[str, Path]
    logs_dir: Path | None
    options: Any  # pytest's option namespace: the live-run options (LIVE_OPTIONS) and --fail-fast
    models_file: Path | None = None
    capture: Any = None  # pytest's capture manager: a live run's progress goes to the terminal, not into a test's
    runs: dict[str, RunResult] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model: the numbers the tests judged
    diffs: list[str] = field(default_factory=list)
    report_errors: list[str] = field(default_factory=list)

    def recorded_log(self, model: str) -> Path | None:
        if model in self.recorded_logs:
            return self.recorded_logs[model]
        if self.logs_dir is not None and (candidate := self.logs_dir / f"{model}.log").is_file():
            return candidate
        return None

    def run(self, model: str) -> RunResult:
        """The model's run, read or made once per session."""
        if model not in self.runs:
            spec, path = self.matrix[model], self.recorded_log(model)
            if path is not None:
                self.runs[model] = acquire.recorded(spec, path, Path(self.options.runs_dir))
            else:
                settings = acquire.LiveSettings(
                    self.options, self.baselines_path, self.update, self.models_file, stream=sys.__stderr__
                )
                with self._uncaptured():
                    self.runs[model] = acquire.live(spec, settings)
        return self.runs[model]

    def _uncaptured(self) -> contextlib.AbstractContextManager[None]:
        return self.capture.global_and_fixture_disabled() if self.capture is not None else contextlib.nullcontext()

    def baseline(self, model: str) -> baselines.Baseline:
        if self.update:  # its file changes as the session goes: judging against it would depend on test order
            pytest.skip(f"{model}: --baseline-update records baselines in this session; rerun without it to judge")
        return baselines.require(baselines.load(self.baselines_path), model, self.baselines_path)

    def keep(self, run: RunResult, record_property: Callable[[str, Any], None], values: dict[str, Any]) -> None:
        """Numbers for the run report and, as JUnit XML properties, for CI dashboards."""
        self.results.setdefault(run.spec.name, {}).update(values)
        where = {
            "model": run.spec.name,
            "gpus": run.provenance["gpus"],
            "layout": run.provenance["layout"],
            "report": str(run.report_dir),
        }
        for key, value in {**where, **values}.items():
            record_property(key, value)


# --- pytest-benchmark: the recorded step times as its rounds -----------------------------------------------------


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


def benchmark_run(benchmark: Any, run: RunResult) -> metrics.Throughput:
    """Give pytest-benchmark the steady window's real step times as its rounds, and the run's numbers."""
    tp = run.throughput
    prov = run.provenance
    benchmark.extra_info.update(
        model=run.spec.name,
        tokens_per_sec_per_gpu=tp.mean,
        tokens_per_sec_per_gpu_median=tp.median,
        throughput_steps=tp.steps_used,
        throughput_window=[tp.first_step, tp.last_step],
        throughput_derived=tp.derived,
        gpus=prov["gpus"],
        layout=prov["layout"],
        global_batch_size=run.spec.global_batch_size,
        seq_length=run.spec.seq_length,
        origin=run.origin,
    )
    if not tp.step_times:
        raise AcceptanceError(f"{run.log_path}: no step times in the throughput window")
    replay_step_times(benchmark, tp.step_times)
    return tp


# --- hooks -------------------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qwen-acceptance", "Qwen pretraining acceptance")
    group.addoption(
        "--from-log",
        action="append",
        default=[],
        metavar="MODEL=PATH",
        help="judge MODEL from this recorded NeMo log instead of training it (repeatable)",
    )
    group.addoption("--logs-dir", type=Path, metavar="DIR", help="directory of recorded logs named MODEL.log")
    group.addoption(
        "--baselines", type=Path, metavar="FILE", help="baselines file (default: baselines.yaml in the rootdir)"
    )
    group.addoption(
        "--baseline-update",
        action="store_true",
        help="record the final loss and throughput of complete clean runs as the new baselines",
    )
    group.addoption(
        "--models-file",
        type=Path,
        metavar="FILE",
        help=f"model matrix (default: the packaged models.yaml, or ${models.MODELS_ENV})",
    )
    for flag, kwargs in LIVE_OPTIONS:
        group.addoption(flag, **kwargs)
    group.addoption(
        "--fail-fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop a live run whose loss curve has clearly left the baseline's (default: on; never "
        "under --baseline-update or without a baseline curve)",
    )


def _parse_from_log(values: list[str], matrix: dict[str, models.ModelSpec]) -> dict[str, Path]:
    logs: dict[str, Path] = {}
    for value in values:
        model, sep, path = value.partition("=")
        if not sep or not model or not path:
            raise pytest.UsageError(f"--from-log {value!r}: expected MODEL=PATH")
        if model not in matrix:
            raise pytest.UsageError(f"--from-log {value!r}: unknown model; the matrix has {', '.join(matrix)}")
        if not Path(path).is_file():
            raise pytest.UsageError(f"--from-log {value!r}: {path}: no such log file")
        if model in logs and logs[model] != Path(path):
            raise pytest.UsageError(
                f"--from-log {value!r}: {model} already has a log ({logs[model]}); give one per model"
            )
        logs[model] = Path(path)
    return logs


def pytest_configure(config: pytest.Config) -> None:
    """Register each model's marker (and its groups, e.g. smoke) from the matrix, and set up the session."""
    try:
        matrix = models.load_matrix(config.getoption("models_file"))
    except AcceptanceError as exc:
        raise pytest.UsageError(str(exc)) from None
    for spec in matrix.values():
        config.addinivalue_line(
            "markers",
            f"{spec.name}: acceptance run of {spec.recipe} on {spec.gpus} GPUs "
            f"(global batch {spec.global_batch_size}, seq {spec.seq_length})",
        )
    for group in sorted({m for spec in matrix.values() for m in spec.markers}):
        members = [s.name for s in matrix.values() if group in s.markers]
        config.addinivalue_line("markers", f"{group}: the models {', '.join(members)}")
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
            run.write_report(entries.get(name), state.results.get(name, {}))
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


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def acceptance(pytestconfig: pytest.Config) -> AcceptanceSession:
    return pytestconfig.stash[STASH]


@pytest.fixture(scope="session")
def training_run(acceptance: AcceptanceSession, model: str) -> RunResult:
    """The model's run, made or read once per session and shared by every test of that model; skipped, with the
    reason, where neither a recorded log nor the GPUs are here."""
    try:
        return acceptance.run(model)
    except acquire.Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def baseline(acceptance: AcceptanceSession, training_run: RunResult) -> baselines.Baseline:
    """The model's measured baseline (a missing one fails with what to do; skipped under --baseline-update)."""
    return acceptance.baseline(training_run.spec.name)


@pytest.fixture
def baselines_path(acceptance: AcceptanceSession) -> Path:
    return acceptance.baselines_path


@pytest.fixture
def record(
    acceptance: AcceptanceSession, training_run: RunResult, record_property: Callable[[str, Any], None]
) -> Callable[[Check], Check]:
    """``record(check)`` keeps a check's numbers for the report and JUnit, and hands the check back."""

    def keep(check: Check) -> Check:
        acceptance.keep(training_run, record_property, dict(check.values))
        return check

    return keep


@pytest.fixture
def throughput_benchmark(training_run: RunResult, benchmark: Any) -> metrics.Throughput:
    """The run's steady-window step times, replayed into pytest-benchmark."""
    return benchmark_run(benchmark, training_run)


@pytest.fixture
def baseline_diffs(acceptance: AcceptanceSession) -> list[str]:
    """Where an update test puts its diff, for the session's summary."""
    return acceptance.diffs
