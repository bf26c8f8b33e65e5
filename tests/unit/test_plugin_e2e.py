"""The acceptance suite end to end: `pytest -m MODEL --from-log ...` in a real subprocess (pytester), judged by
the outcome of each test."""

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from nemolog import write_log

from qwen_acceptance import models
from qwen_acceptance.judge import conformance, curves, logparse, metrics

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMOKE = ROOT / "fixtures/logs/smoke_qwen3.log"
SMOKE_RUNS = ROOT / "fixtures/smoke-runs"
MEASURED = "  provenance: {date: '2026-01-01', gpus: 8, log_sha256: abc}\n"
RULES = [
    "test_run_follows_reference",
    "test_final_step_reached",
    "test_loss_finite",
    "test_final_loss_within_tolerance",
    "test_loss_curve_within_band",
    "test_loss_curve_correlates",
    "test_throughput_within_band",
    "test_throughput_recorded",
]
OUTCOME = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR|XFAIL) test_pretraining\.py::(\w+)\[(\w+)\]", re.M)


class Suite:
    """The repository's acceptance tests, copied into pytester's folder and run there in a subprocess."""

    def __init__(self, pytester, monkeypatch, tmp_path):
        self.pytester, self.monkeypatch = pytester, monkeypatch
        pytester.makepyfile(test_pretraining=(ROOT / "tests/acceptance/test_pretraining.py").read_text())
        # Not an xdist worker, whatever runs this test: pytest-benchmark switches itself off inside one.
        for name in [k for k in os.environ if k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))]:
            monkeypatch.delenv(name)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        self.runs = tmp_path / "runs"

    def run(self, *args, env=None):
        for key, value in (env or {}).items():
            self.monkeypatch.setenv(key, value)
        if "--runs-dir" not in args:  # reports go to a temporary folder, not the checkout
            args = (*args, "--runs-dir", self.runs)
        result = self.pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *map(str, args))
        result.text = result.stdout.str() + "\n" + result.stderr.str()
        return result

    def judge(self, model, log, baselines=None, *args, env=None):
        """``-m MODEL --from-log MODEL=LOG [--baselines FILE] ARGS``: the common case."""
        chosen = ("--baselines", baselines) if baselines is not None else ()
        return self.run("-m", model, "--from-log", f"{model}={log}", *chosen, *args, env=env)


def by_test(result, model):
    """Each rule's outcome for ``model``, from pytest's short summary (-rA)."""
    return {name: outcome.lower() for outcome, name, m in OUTCOME.findall(result.stdout.str()) if m == model}


@pytest.fixture
def suite(pytester, monkeypatch, tmp_path):
    return Suite(pytester, monkeypatch, tmp_path)


QWEN3_8B = models.get_model("qwen3_8b")


def reference_log(path, steps=1000, *, tokens=None, seconds=None, **kw):
    """A NeMo log of qwen3_8b's reference configuration as its progress lines show it: global batch 128, the
    reference's learning-rate schedule, 8 GPUs, and tokens/s/GPU that agree with the step time at seq 8192."""
    per_gpu_step = 128 * 8192 / 8
    if seconds is None:
        seconds = (lambda s: per_gpu_step / tokens(s)) if tokens else (lambda s: 1.0)
    if tokens is None:
        tokens = lambda s: per_gpu_step / seconds(s)  # noqa: E731
    kw = {"gbs": 128, "world_size": 8, "lr": lambda s: conformance.reference_lr(s, QWEN3_8B.lr, 1000), **kw}
    return write_log(path, steps, tokens=tokens, seconds=seconds, **kw)


@pytest.fixture
def full_log(tmp_path):
    return reference_log(tmp_path / "qwen3_8b.log", loss=lambda s: 3.0 + 2.0 / (s + 1), seconds=lambda s: 2.0)


def _baselines(tmp_path, loss):
    """A baselines file whose qwen3_8b entry has the given final loss, and the curve and throughput of the
    `full_log` fixture's run (so only the final-loss verdict depends on ``loss``)."""
    log = logparse.parse_file(tmp_path / "qwen3_8b.log")
    curve = curves.sparse(log)
    tps = metrics.throughput(log).mean
    path = tmp_path / "baselines.yaml"
    path.write_text(
        f"# keep me\nqwen3_8b:\n  final_loss: {loss}\n  tolerance: 0.05\n{MEASURED}"
        f"  tokens_per_sec_per_gpu: {tps}\n  curve: {{steps: {list(curve.steps)}, loss: {list(curve.loss)}}}\n"
        "qwen25_7b:\n  final_loss: 9.5\n" + MEASURED
    )
    return path


def test_passing_log_passes(suite, tmp_path, full_log):
    out = suite.judge("qwen3_8b", full_log, _baselines(tmp_path, 3.1), "--benchmark-json", tmp_path / "bench.json")
    out.assert_outcomes(passed=8)
    bench = json.loads((tmp_path / "bench.json").read_text())["benchmarks"][0]
    assert bench["stats"]["rounds"] == 980  # steps 10..989: the reference window
    assert bench["stats"]["mean"] == pytest.approx(2.0)  # real step times, not the test's own duration
    assert bench["extra_info"]["tokens_per_sec_per_gpu"] == pytest.approx(65536, rel=1e-3)
    # GPUs and layout as the log shows them: NeMo's process-group lines give 8 GPUs, nothing gives the layout.
    assert bench["extra_info"]["gpus"] == 8 and bench["extra_info"]["layout"] is None


def test_failing_log_fails(suite, tmp_path, full_log):
    out = suite.judge("qwen3_8b", full_log, _baselines(tmp_path, 2.5))
    out.assert_outcomes(passed=7, failed=1)
    assert by_test(out, "qwen3_8b")["test_final_loss_within_tolerance"] == "failed"
    assert "+20.08% (tolerance ±5%)" in out.text


def test_short_run_fails_final_step(suite, tmp_path, full_log):
    log = reference_log(tmp_path / "short.log", 600, loss=lambda s: 3.0)
    out = suite.judge("qwen3_8b", log, _baselines(tmp_path, 3.0))
    outcomes = by_test(out, "qwen3_8b")
    # Never a pass: the run planned 600 steps, did not reach step 999, and has no final loss.
    assert outcomes["test_run_follows_reference"] == outcomes["test_final_step_reached"] == "failed"
    assert outcomes["test_final_loss_within_tolerance"] == "failed"
    assert "global_step 999 not reached (last logged: 599)" in out.text
    (summary,) = suite.runs.glob("qwen3_8b/recorded-*/report/summary.md")
    text = summary.read_text()  # a run cut short has no final loss, in the report either
    assert "| final loss | — (last logged step 599) |" in text and "| delta | — |" in text


def test_nan_run_fails(suite, tmp_path, full_log):
    log = reference_log(tmp_path / "nan.log", loss=lambda s: float("nan") if s == 400 else 3.0)
    out = suite.judge("qwen3_8b", log, _baselines(tmp_path, 3.0))
    assert by_test(out, "qwen3_8b")["test_loss_finite"] == "failed"
    assert "loss NaN/inf at steps [400]" in out.text


def test_no_log_skips_with_reason(suite):
    out = suite.run("-m", "qwen3_8b or qwen2_72b")
    out.assert_outcomes(skipped=16)
    assert (
        "qwen2_72b: no recorded log (--from-log qwen2_72b=PATH or --logs-dir DIR), and a live run needs 32 GPUs "
        "(several nodes: set NNODES, NODE_RANK" in out.text
    )
    assert (
        "qwen3_8b: no recorded log (--from-log qwen3_8b=PATH or --logs-dir DIR), and a live run needs 8 GPUs; "
        "this machine has 0" in out.text
    )


def test_logs_dir_and_marker_selection(suite, tmp_path, full_log):
    out = suite.run(
        "-m", "qwen3_8b or qwen25_7b", "--logs-dir", full_log.parent, "--baselines", _baselines(tmp_path, 3.1)
    )
    out.assert_outcomes(passed=8, skipped=8)  # qwen25_7b has no log in that folder


@pytest.mark.parametrize(
    "value, message",
    [
        ("qwen3_8b={missing}", "nope.log: no such log file"),
        ("llama=x.log", "unknown model"),
        ("qwen3_8b", "expected MODEL=PATH"),
    ],
)
def test_bad_from_log_is_a_usage_error(suite, tmp_path, value, message):
    out = suite.run("--from-log", value.format(missing=tmp_path / "nope.log"))
    assert out.ret == pytest.ExitCode.USAGE_ERROR and message in out.stderr.str()


def test_a_repeated_from_log_for_one_model_is_a_usage_error(suite, tmp_path):
    """The last one winning silently would judge another log than the user meant."""
    first, second = write_log(tmp_path / "a.log", 5), write_log(tmp_path / "b.log", 5)
    out = suite.run("--from-log", f"qwen3_8b={first}", "--from-log", f"qwen3_8b={second}")
    assert out.ret == pytest.ExitCode.USAGE_ERROR
    assert f"qwen3_8b already has a log ({first}); give one per model" in out.stderr.str()


def test_foreign_log_errors_with_one_line(suite, tmp_path):
    log = tmp_path / "foreign.log"
    log.write_text("hello\n")
    out = suite.run("-m", "qwen3_8b", "--from-log", f"qwen3_8b={log}")
    out.assert_outcomes(errors=8)
    assert "foreign.log: no NeMo training lines" in out.text and "Traceback" not in out.text


def test_baseline_update_flow(suite, tmp_path, full_log):
    base = tmp_path / "baselines.yaml"
    base.write_text(
        "# keep me\nqwen25_7b:\n  final_loss: 9.5  # and me\n"
        + MEASURED
        + "qwen3_8b:\n  final_loss: null\n  tolerance: 0.04\n"
    )
    out = suite.judge("qwen3_8b", full_log, base, "--baseline-update")
    # A session that updates baselines is never green; nothing judges against the file while this session
    # rewrites it (so no outcome depends on test order): the four baseline rules are skipped, saying why.
    out.assert_outcomes(passed=4, skipped=4, failed=1)
    assert by_test(out, "qwen3_8b")["test_record_baseline"] == "failed"
    assert out.text.count("qwen3_8b: --baseline-update records baselines in this session; rerun without it") == 4
    assert "baseline updated" in out.text and "+  final_loss: 3.002" in out.text
    text = base.read_text()
    assert text.startswith("# keep me\nqwen25_7b:\n  final_loss: 9.5  # and me\n")
    assert "tolerance: 0.04" in text and "log_sha256:" in text
    out = suite.judge("qwen3_8b", full_log, base)
    out.assert_outcomes(passed=8)


def test_update_session_outcomes_do_not_depend_on_test_order(suite, pytester, tmp_path, full_log):
    """With the record test last (the file's order) or first: the same outcomes, and the same file written, since
    no test of an updating session judges against the file it rewrites."""
    source = (ROOT / "tests/acceptance/test_pretraining.py").read_text()
    record = source[source.index("def test_record_baseline") :]
    first = source.replace(record, "").replace(
        "\n\ndef test_run_follows_reference", f"\n\n{record}\n\ndef test_run_follows_reference"
    )
    written = []
    for text in (source, first):
        pytester.makepyfile(test_pretraining=text)
        base = tmp_path / "baselines.yaml"
        base.write_text("qwen3_8b:\n  final_loss: 2.0\n" + MEASURED)  # an old baseline the run is far from
        out = suite.judge("qwen3_8b", full_log, base, "--baseline-update")
        out.assert_outcomes(passed=4, skipped=4, failed=1)
        written.append(re.sub(r"date: '?[^\n']+'?", "", base.read_text()))
    assert first.index("def test_record_baseline") < first.index("def test_final_loss_within_tolerance")
    assert written[0] == written[1]


def test_baseline_update_refuses_incomplete_run(suite, tmp_path):
    base = tmp_path / "baselines.yaml"
    base.write_text("qwen3_8b:\n  final_loss: null\n")
    log = reference_log(tmp_path / "short.log", 700, loss=lambda s: 3.0)
    out = suite.judge("qwen3_8b", log, base, "--baseline-update")
    assert by_test(out, "qwen3_8b")["test_record_baseline"] == "failed"
    assert "not updating the baseline from an incomplete or unclean run" in out.text
    assert base.read_text() == "qwen3_8b:\n  final_loss: null\n"


@pytest.fixture
def one_fake_gpu(tmp_path):
    """An nvidia-smi that lists one GPU: the suite then takes the live path on this CPU machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-00000000)'\n")
    smi.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.slow
def test_live_run_failure_reports_the_log_tail(suite, tmp_path, one_fake_gpu):
    """A real live launch (dataset, torchrun, NeMo recipe) that cannot train on a CPU: every test of the model
    errors with the exit code, the log's path and its last lines."""
    out = suite.run(
        "-m", "smoke_qwen3", "--data-cache", tmp_path / "cache", env={**one_fake_gpu, "HF_HUB_OFFLINE": "1"}
    )
    out.assert_outcomes(errors=8)
    assert "smoke_qwen3: training exited with code 1; log: " in out.text
    assert "No supported gpu backend found!" in out.text  # NeMo's own error, from the log's tail
    (log,) = suite.runs.glob("smoke_qwen3/*/train.log")
    assert "[qwen-acceptance] resolved: {" in log.read_text()  # the entry ran and printed its configuration
    resolved = logparse.parse_file(log).resolved
    assert resolved["model"] == "smoke_qwen3" and resolved["probe"] is False and resolved["seed"] == 1234
    assert (log.parent / "command.sh").read_text().count("torch.distributed.run") == 1


@pytest.fixture
def replayed_live_run(suite, pytester, tmp_path, one_fake_gpu):
    """`pytest -m smoke_qwen3` taking the live path, the launcher replaying a recorded log (replay_launch.py) in
    place of torchrun; judged against the repository's baselines.yaml unless --baselines says otherwise."""
    prefix = tmp_path / "data"
    for suffix in (".bin", ".idx"):
        Path(f"{prefix}{suffix}").touch()
    (pytester.path / "baselines.yaml").write_text((ROOT / "baselines.yaml").read_text())

    def run(replay_args, *args):
        env = {
            **one_fake_gpu,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            "QA_REPLAY": shlex.join(map(str, replay_args)),
        }
        return suite.run(
            "-p",
            "replay_launch",
            "-m",
            "smoke_qwen3",
            "--data-prefix",
            prefix,
            "--tokenizer",
            "bundled:qwen3",
            *args,
            env=env,
        )

    return run


def test_live_run_of_an_honest_rerun_passes_and_shows_its_live_line(replayed_live_run):
    """The smoke noise run furthest from the baseline (another seed), replayed as a live run: every numeric check
    green (only conformance names the other seed), and its live line reaches the terminal rather than a test's
    captured output, on track to the end."""
    out = replayed_live_run([SMOKE_RUNS / "smoke_qwen3-h200x1-seed4321.log"])
    out.assert_outcomes(passed=7, failed=1)
    assert by_test(out, "smoke_qwen3")["test_run_follows_reference"] == "failed"
    assert "differs from the reference configuration: data.seed 4321 (reference 1234)" in out.text
    assert "[smoke_qwen3] step 200/200  loss 2.62  " in out.stderr.str()
    assert out.stderr.lines[-1].endswith("  | curve @190: 3.017 vs baseline 2.843 (+6.1%) on track")


def test_fail_fast_stops_a_live_run_and_reports_it(suite, replayed_live_run):
    """Every loss of the smoke baseline's own log doubled (a derived broken run): the run is stopped at step 29,
    every test of the model errors with the step and both values, and the report covers the steps it ran."""
    out = replayed_live_run([SMOKE, "--scale-loss", 2, "--step-delay", 0.02])
    out.assert_outcomes(errors=8)
    stop = (
        "qwen-acceptance: smoke_qwen3: fail-fast: the loss curve was beyond ±15% of the baseline's for 3 points in "
        "a row; at step 20 (mean of steps 20..29) the run's 18.04 against the baseline's 9.022 (+100.0%; band ±10%)"
    )
    # Counted in the error sections: the short summary repeats the message in full only on CI (pytest's CI=1).
    assert sum(line.startswith(stop) for line in out.outlines) == 8
    (summary,) = suite.runs.glob("smoke_qwen3/*/report/summary.md")
    assert f"report: {summary}" in out.text
    text = summary.read_text()
    assert "| run stopped | fail-fast: the loss curve was beyond ±15%" in text
    assert "| final loss | — (last logged step " in text and "| delta | — |" in text
    assert (summary.parent / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_fail_fast_lets_the_broken_run_finish(replayed_live_run):
    out = replayed_live_run([SMOKE, "--scale-loss", 2], "--no-fail-fast")
    assert "fail-fast" not in out.text
    assert "[smoke_qwen3] step 200/200  loss 5.426  " in out.stderr.str()
    # No stop count: fail-fast is off.
    assert any(
        line.endswith("  | curve @190: 5.685 vs baseline 2.843 (+100.0%) outside band") for line in out.stderr.lines
    )
    outcomes = by_test(out, "smoke_qwen3")
    assert outcomes["test_loss_curve_within_band"] == "failed" and outcomes["test_final_step_reached"] == "passed"


@pytest.mark.parametrize("update", [False, True], ids=["no-curve", "baseline-update"])
def test_fail_fast_off_says_why_once(tmp_path, replayed_live_run, update):
    base = tmp_path / "baselines.yaml"
    entry = (
        "  final_loss: 2.713\n  tolerance: 0.05\n  tokens_per_sec_per_gpu: 113217.61\n"
        "  provenance: {date: '2026-11-28', gpus: 1, log_sha256: abc}\n"
    )
    base.write_text("smoke_qwen3:\n" + entry)  # measured, without a curve
    out = replayed_live_run([SMOKE, "--scale-loss", 2], "--baselines", base, *(["--baseline-update"] * update))
    why = (
        "--baseline-update records this run as the baseline" if update else f"{base} has no loss curve for smoke_qwen3"
    )
    assert out.stderr.lines.count(f"[smoke_qwen3] fail-fast off: {why}") == 1
    assert out.stderr.str().count("fail-fast off") == 1
    assert by_test(out, "smoke_qwen3")["test_final_step_reached"] == "passed"


def test_live_run_refuses_xdist_workers(suite, one_fake_gpu):
    out = suite.run("-m", "smoke_qwen3", env={**one_fake_gpu, "PYTEST_XDIST_WORKER": "gw0"})
    out.assert_outcomes(errors=8)
    assert "smoke_qwen3: live training cannot run under pytest-xdist; run without -n" in out.text


def test_curve_and_throughput_gates(suite, tmp_path):
    """A run that diverged mid-way and recovered passes the reference rule but fails the curve tests; a run 30%
    slower fails the throughput gate, and one 30% faster asks for a baseline refresh."""
    import math

    def healthy(s):
        return 2.5 + 8.0 * math.exp(-s / 150)

    base_log = reference_log(tmp_path / "base.log", loss=healthy)
    base = tmp_path / "baselines.yaml"
    base.write_text("qwen3_8b:\n  final_loss: null\n")
    suite.judge("qwen3_8b", base_log, base, "--baseline-update")
    bad = reference_log(tmp_path / "bad.log", loss=lambda s: healthy(s) * (1.6 if 300 <= s < 400 else 1.0))
    out = suite.judge("qwen3_8b", bad, base)
    out.assert_outcomes(passed=6, failed=2)
    outcomes = by_test(out, "qwen3_8b")
    assert outcomes["test_final_loss_within_tolerance"] == "passed"
    assert outcomes["test_loss_curve_within_band"] == outcomes["test_loss_curve_correlates"] == "failed"
    assert "loss left the ±10% band around the baseline curve at steps [300, 310" in out.text
    for factor, message in (
        (0.7, "-30.0% from the baseline's 131,072 (band -10% / +20%)"),
        (1.3, "+30.0% from the baseline's 131,072 (band -10% / +20%; a gain this large asks"),
    ):
        log = reference_log(tmp_path / f"speed{factor}.log", loss=healthy, tokens=lambda s, f=factor: 131072.0 * f)
        out = suite.judge("qwen3_8b", log, base)
        out.assert_outcomes(passed=7, failed=1)
        assert by_test(out, "qwen3_8b")["test_throughput_within_band"] == "failed"
        assert message in out.text


def test_report_and_junit_properties(suite, tmp_path, full_log):
    out = suite.judge("qwen3_8b", full_log, _baselines(tmp_path, 3.1), "--junitxml", tmp_path / "junit.xml")
    out.assert_outcomes(passed=8)
    (summary,) = suite.runs.glob("qwen3_8b/recorded-*/report/summary.md")
    assert f"qwen3_8b: {summary}" in out.text  # pytest says where the report is
    text = summary.read_text()
    assert "| final loss | 3.002 |" in text and "| delta | -3.16% (tolerance ±5%) |" in text
    assert "| verdict (reference rule) | pass |" in text
    assert "| GPUs / layout | 8 × NVIDIA H200 / — (as far as the log shows) |" in text  # the log names no layout
    for name in ("loss.png", "throughput.png"):
        assert (summary.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    prov = json.loads((summary.parent / "provenance.json").read_text())
    assert prov["gpus"] == 8 and prov["log"] == str(full_log) and len(prov["log_sha256"]) == 64
    junit = (tmp_path / "junit.xml").read_text()
    assert '<property name="final_loss" value="3.002"' in junit
    assert '<property name="loss_delta_pct" value="-3.161"' in junit
    assert '<property name="verdict" value="pass"' in junit


def test_corrupt_baselines_is_one_line_not_a_traceback(suite, tmp_path, full_log):
    base = tmp_path / "baselines.yaml"
    base.write_text("qwen3_8b:\n  final_loss: 3.0\n  tolerance: 0.05\n")  # measured, but no provenance
    out = suite.judge("qwen3_8b", full_log, base)
    out.assert_outcomes(passed=4, errors=4)  # the four rules that need the baseline
    assert "qwen-acceptance: " + str(base) + ": qwen3_8b: a measured baseline needs provenance field(s)" in out.text
    assert "Traceback" not in out.text and "raise AcceptanceError" not in out.text


def test_a_log_of_another_model_fails_conformance(suite):
    out = suite.run("-m", "smoke_qwen3_moe", "--from-log", f"smoke_qwen3_moe={SMOKE}")
    assert by_test(out, "smoke_qwen3_moe")["test_run_follows_reference"] == "failed"
    assert "differs from the reference configuration: steps: the run planned 200 (reference 120)" in out.text
    assert "model_config 'Qwen3Config8B' (reference 'Qwen3Config30B_A3B')" in out.text


def test_what_a_log_does_not_show_is_a_warning_not_a_silent_pass(suite, tmp_path, full_log):
    out = suite.judge("qwen3_8b", full_log, _baselines(tmp_path, 3.1))
    out.assert_outcomes(passed=8, warnings=1)
    assert (
        "qwen3_8b: not verified from the log: seed, model shape, optimizer and precision (the log has no "
        "`[qwen-acceptance] resolved:` line)"
    ) in out.text
    (summary,) = suite.runs.glob("qwen3_8b/recorded-*/report/summary.md")
    assert "| not verified (warning) | seed, model shape, optimizer and precision" in summary.read_text()


def test_baseline_update_takes_provenance_from_the_log_and_refuses_another_configuration(suite, tmp_path):
    import yaml

    base = tmp_path / "baselines.yaml"
    base.write_text("smoke_qwen3:\n  final_loss: null\n")
    tp2 = SMOKE_RUNS / "smoke_qwen3-h200x2-tp2.log"
    out = suite.judge("smoke_qwen3", tp2, base, "--baseline-update")
    assert "baseline updated" in out.text, out.text
    provenance = yaml.safe_load(base.read_text())["smoke_qwen3"]["provenance"]
    assert (provenance["gpus"], provenance["layout"], provenance["seed"]) == (2, "TP2 PP1 CP1", 1234)
    assert provenance["max_steps"] == 200 and provenance["global_batch_size"] == 16
    before = base.read_text()
    seed = SMOKE_RUNS / "smoke_qwen3-h200x1-seed4321.log"
    out = suite.judge("smoke_qwen3", seed, base, "--baseline-update")
    assert (
        "not updating the baseline from a run that differs from the reference configuration: data.seed 4321 "
        "(reference 1234)"
    ) in out.text
    assert base.read_text() == before


def test_markers_are_registered_from_the_matrix(suite, pytester):
    """No marker list to keep in sync: every model of the matrix in use, and its groups, are markers under
    --strict-markers, and a model added to the matrix is selectable at once."""
    matrix = (ROOT / "src/qwen_acceptance/models.yaml").read_text()
    extra = pytester.path / "models.yaml"
    extra.write_text(
        matrix.replace(
            "  smoke_qwen3:\n",
            "  smoke_extra:\n    recipe: qwen3_8b\n    markers: [nightly]\n"
            "    reference_gpus: 1\n    gpus: 1\n    global_batch_size: 16\n"
            "    seq_length: 1024\n    layout: {tp: 1}\n\n  smoke_qwen3:\n",
            1,
        )
    )
    out = suite.run("--strict-markers", "--markers", "--models-file", extra)
    names = set(re.findall(r"^@pytest\.mark\.(\w+):", out.stdout.str(), re.M))
    assert {*models.load_matrix(), "smoke", "smoke_extra", "nightly"} <= names
    out = suite.run("--strict-markers", "-m", "nightly", "--models-file", extra)
    out.assert_outcomes(skipped=8)  # selected, and skipped for want of a log or a GPU


RECORDED_ROWS = [
    (table_json.parent, row)
    for table_json in sorted((ROOT / "fixtures/sensitivity").glob("*/table.json"))
    for row in json.loads(table_json.read_text())["rows"]
    if row["status"] == "judged"
]


@pytest.mark.parametrize("table_dir, row", RECORDED_ROWS, ids=[f"{d.name}-{r['variant']}" for d, r in RECORDED_ROWS])
def test_pytest_judges_each_recorded_variant_as_its_table_says(suite, tmp_path, table_dir, row):
    """The sensitivity tables claim to judge with exactly the suite's checks: each recorded variant log, run
    through `pytest --from-log`, gets from every test the verdict its table row records (conformance included)."""
    model = json.loads((table_dir / "table.json").read_text())["model"]
    base = tmp_path / "baselines.yaml"  # a path inside the checkout would make it pytest's rootdir
    base.write_text((ROOT / "baselines.yaml").read_text())
    out = suite.judge(model, table_dir / row["log"], base)
    expected = {f"test_{name}": "passed" if c["passed"] else "failed" for name, c in row["checks"].items()}
    expected["test_run_follows_reference"] = "passed" if row["conforms"] else "failed"
    outcomes = by_test(out, model)
    assert {name: outcomes[name] for name in expected} == expected, out.text
