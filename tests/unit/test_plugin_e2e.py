"""The acceptance suite end to end: `pytest -m MODEL --from-log ...` in a real subprocess, judged by outcome."""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nemolog import write_log
from qwen_acceptance import conformance, curves, logparse, metrics, models

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMOKE = ROOT / "fixtures/logs/smoke_qwen3.log"
MEASURED = "  provenance: {date: '2026-01-01', gpus: 8, log_sha256: abc}\n"


def run_suite(*args, env=None):
    if "--runs-dir" not in args:  # reports go to a temporary folder, not the checkout
        args = (*args, "--runs-dir", tempfile.mkdtemp(prefix="qa-runs-"))
    cmd = [sys.executable, "-m", "pytest", "tests/acceptance", "-p", "no:cacheprovider", "-rA", "-q", *map(str, args)]
    # Not an xdist worker, whatever runs this test: pytest-benchmark switches itself off inside one.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    base.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**base, **(env or {})})


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
    path.write_text(f"# keep me\nqwen3_8b:\n  final_loss: {loss}\n  tolerance: 0.05\n{MEASURED}"
                    f"  tokens_per_sec_per_gpu: {tps}\n  curve: {{steps: {list(curve.steps)}, loss: {list(curve.loss)}}}\n"
                    "qwen25_7b:\n  final_loss: 9.5\n" + MEASURED)
    return path


def test_passing_log_passes(tmp_path, full_log):
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={full_log}",
                    "--baselines", _baselines(tmp_path, 3.1), "--benchmark-json", tmp_path / "bench.json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "8 passed" in out.stdout
    bench = json.loads((tmp_path / "bench.json").read_text())["benchmarks"][0]
    assert bench["stats"]["rounds"] == 980  # steps 10..989: the reference window
    assert bench["stats"]["mean"] == pytest.approx(2.0)  # real step times, not the test's own duration
    assert bench["extra_info"]["tokens_per_sec_per_gpu"] == pytest.approx(65536, rel=1e-3)
    assert bench["extra_info"]["layout"] == "TP4 PP1 CP1" and bench["extra_info"]["gpus"] == 8


def test_failing_log_fails(tmp_path, full_log):
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={full_log}", "--baselines", _baselines(tmp_path, 2.5))
    assert out.returncode == 1
    assert "FAILED tests/acceptance/test_pretraining.py::test_final_loss_within_tolerance[qwen3_8b]" in out.stdout
    assert "+20.08% (tolerance ±5%)" in out.stdout


def test_short_run_fails_final_step(tmp_path, full_log):
    log = reference_log(tmp_path / "short.log", 600, loss=lambda s: 3.0)
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={log}", "--baselines", _baselines(tmp_path, 3.0),
                    "--runs-dir", tmp_path / "runs")
    assert out.returncode == 1
    assert "global_step 999 not reached (last logged: 599)" in out.stdout
    assert "did not reach global_step 999" in out.stdout  # the loss test fails too, never passes
    (summary,) = (tmp_path / "runs/qwen3_8b").glob("recorded-*/report/summary.md")
    text = summary.read_text()  # a run cut short has no final loss, in the report either
    assert "| final loss | — (last logged step 599) |" in text and "| delta | — |" in text


def test_nan_run_fails(tmp_path, full_log):
    log = reference_log(tmp_path / "nan.log", loss=lambda s: float("nan") if s == 400 else 3.0)
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={log}", "--baselines", _baselines(tmp_path, 3.0))
    assert out.returncode == 1 and "loss NaN/inf at steps [400]" in out.stdout


def test_no_log_skips_with_reason():
    out = run_suite("-m", "qwen3_8b or qwen2_72b")
    assert out.returncode == 0 and "16 skipped" in out.stdout
    assert "qwen2_72b: no recorded log (--from-log qwen2_72b=PATH or --logs-dir DIR), and a live run needs 32 GPUs " \
           "(several nodes: set NNODES, NODE_RANK" in out.stdout
    assert "qwen3_8b: no recorded log (--from-log qwen3_8b=PATH or --logs-dir DIR), and a live run needs 8 GPUs; " \
           "this machine has 0" in out.stdout


def test_logs_dir_and_marker_selection(tmp_path, full_log):
    out = run_suite("-m", "qwen3_8b or qwen25_7b", "--logs-dir", full_log.parent,
                    "--baselines", _baselines(tmp_path, 3.1))
    assert out.returncode == 0, out.stdout
    assert "8 passed, 8 skipped" in out.stdout  # qwen25_7b has no log in that folder


def test_bad_from_log_is_a_usage_error(tmp_path):
    out = run_suite("--from-log", f"qwen3_8b={tmp_path / 'nope.log'}")
    assert out.returncode == 4 and "nope.log: no such log file" in out.stderr
    out = run_suite("--from-log", "llama=x.log")
    assert out.returncode == 4 and "unknown model" in out.stderr


def test_foreign_log_errors_with_one_line(tmp_path):
    log = tmp_path / "foreign.log"
    log.write_text("hello\n")
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={log}")
    assert out.returncode == 1 and "foreign.log: no NeMo training lines" in out.stdout


def test_baseline_update_flow(tmp_path, full_log):
    base = tmp_path / "baselines.yaml"
    base.write_text("# keep me\nqwen25_7b:\n  final_loss: 9.5  # and me\n" + MEASURED +
                    "qwen3_8b:\n  final_loss: null\n  tolerance: 0.04\n")
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={full_log}", "--baselines", base, "--baseline-update")
    assert out.returncode == 1  # a session that updates baselines is never green
    assert "baseline updated" in out.stdout and "+  final_loss: 3.002" in out.stdout
    # Nothing judges against the file while this session rewrites it (so no outcome depends on test order).
    assert re.search(r"SKIPPED \[4\] \S+: qwen3_8b: --baseline-update records baselines in this session; rerun "
                     "without it to judge", out.stdout)
    text = base.read_text()
    assert text.startswith("# keep me\nqwen25_7b:\n  final_loss: 9.5  # and me\n")
    assert "tolerance: 0.04" in text and "log_sha256:" in text
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={full_log}", "--baselines", base)
    assert out.returncode == 0 and "8 passed" in out.stdout


def test_baseline_update_refuses_incomplete_run(tmp_path):
    base = tmp_path / "baselines.yaml"
    base.write_text("qwen3_8b:\n  final_loss: null\n")
    log = reference_log(tmp_path / "short.log", 700, loss=lambda s: 3.0)
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={log}", "--baselines", base, "--baseline-update")
    assert out.returncode == 1 and "not updating the baseline from an incomplete or unclean run" in out.stdout
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
def test_live_run_failure_reports_the_log_tail(tmp_path, one_fake_gpu):
    """A real live launch (dataset, torchrun, NeMo recipe) that cannot train on a CPU: every test of the model
    fails with the exit code, the log's path and its last lines."""
    out = run_suite("-m", "smoke_qwen3", "--runs-dir", tmp_path / "runs", "--data-cache", tmp_path / "cache",
                    env={**one_fake_gpu, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "8 failed" in out.stdout or "8 error" in out.stdout
    assert "smoke_qwen3: training exited with code 1; log: " in out.stdout
    assert "No supported gpu backend found!" in out.stdout  # NeMo's own error, from the log's tail
    (log,) = (tmp_path / "runs/smoke_qwen3").glob("*/train.log")
    assert '[qwen-acceptance] resolved: {' in log.read_text()  # the entry ran and printed its configuration
    resolved = logparse.parse_file(log).resolved
    assert resolved["model"] == "smoke_qwen3" and resolved["probe"] is False and resolved["seed"] == 1234
    assert (log.parent / "command.sh").read_text().count("torch.distributed.run") == 1


@pytest.fixture
def replayed_live_run(tmp_path, one_fake_gpu):
    """`pytest -m smoke_qwen3` taking the live path, the launcher replaying a recorded log (replay_launch.py) in
    place of torchrun; judged against the repository's baselines.yaml unless --baselines says otherwise."""
    prefix = tmp_path / "data"
    for suffix in (".bin", ".idx"):
        Path(f"{prefix}{suffix}").touch()

    def run(replay_args, *args):
        env = {**one_fake_gpu, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               "QA_REPLAY": shlex.join(map(str, replay_args))}
        return run_suite("-p", "replay_launch", "-m", "smoke_qwen3", "--data-prefix", prefix, "--tokenizer",
                         "bundled:qwen3", "--runs-dir", tmp_path / "runs", *args, env=env)
    return run


def test_live_run_of_an_honest_rerun_passes_and_shows_its_live_line(replayed_live_run):
    """The smoke noise run furthest from the baseline (another seed), replayed as a live run: every numeric check
    green (only conformance names the other seed), and its live line reaches the terminal rather than a test's
    captured output, on track to the end."""
    out = replayed_live_run([ROOT / "fixtures/smoke-runs/smoke_qwen3-h200x1-seed4321.log"])
    assert "1 failed, 7 passed" in out.stdout, out.stdout + out.stderr
    assert "FAILED tests/acceptance/test_pretraining.py::test_run_follows_reference[smoke_qwen3]" in out.stdout
    assert "the run differs from the reference configuration: data.seed 4321 (reference 1234)" in out.stdout
    assert "[smoke_qwen3] step 200/200  loss 2.62  " in out.stderr
    assert "  | curve @190: 3.017 vs baseline 2.843 (+6.1%) on track\n" in out.stderr


def test_fail_fast_stops_a_live_run_and_reports_it(tmp_path, replayed_live_run):
    """Every loss of the smoke baseline's own log doubled (a derived broken run): the run is stopped at step 29,
    every test of the model fails with the step and both values, and the report covers the steps it ran."""
    out = replayed_live_run([SMOKE, "--scale-loss", 2, "--step-delay", 0.02])
    assert out.returncode == 1 and "8 errors" in out.stdout, out.stdout + out.stderr
    assert out.stdout.count("smoke_qwen3: fail-fast: the loss curve was beyond ±15% of the baseline's for 3 points in "
                            "a row; at step 20 (mean of steps 20..29) the run's 18.04 against the baseline's 9.022 "
                            "(+100.0%; band ±10%)") == 8
    (summary,) = (tmp_path / "runs/smoke_qwen3").glob("*/report/summary.md")
    assert f"report: {summary}" in out.stdout
    text = summary.read_text()
    assert "| run stopped | fail-fast: the loss curve was beyond ±15%" in text
    assert "| final loss | — (last logged step " in text and "| delta | — |" in text
    assert (summary.parent / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_fail_fast_lets_the_broken_run_finish(tmp_path, replayed_live_run):
    out = replayed_live_run([SMOKE, "--scale-loss", 2], "--no-fail-fast")
    assert "fail-fast" not in out.stdout + out.stderr
    assert "[smoke_qwen3] step 200/200  loss 5.426  " in out.stderr
    assert "  | curve @190: 5.685 vs baseline 2.843 (+100.0%) outside band\n" in out.stderr  # no stop count
    assert "FAILED tests/acceptance/test_pretraining.py::test_loss_curve_within_band[smoke_qwen3]" in out.stdout
    assert "PASSED tests/acceptance/test_pretraining.py::test_final_step_reached[smoke_qwen3]" in out.stdout


@pytest.mark.parametrize("update", [False, True], ids=["no-curve", "baseline-update"])
def test_fail_fast_off_says_why_once(tmp_path, replayed_live_run, update):
    base = tmp_path / "baselines.yaml"
    entry = ("  final_loss: 2.713\n  tolerance: 0.05\n  tokens_per_sec_per_gpu: 113217.61\n"
             "  provenance: {date: '2026-11-28', gpus: 1, log_sha256: abc}\n")
    base.write_text("smoke_qwen3:\n" + entry)  # measured, without a curve
    out = replayed_live_run([SMOKE, "--scale-loss", 2], "--baselines", base, *(["--baseline-update"] * update))
    why = ("--baseline-update records this run as the baseline" if update else
           f"{base} has no loss curve for smoke_qwen3")
    assert out.stderr.count(f"[smoke_qwen3] fail-fast off: {why}\n") == 1
    assert out.stderr.count("fail-fast off") == 1
    assert "PASSED tests/acceptance/test_pretraining.py::test_final_step_reached[smoke_qwen3]" in out.stdout


def test_live_run_refuses_xdist_workers(one_fake_gpu):
    out = run_suite("-m", "smoke_qwen3", env={**one_fake_gpu, "PYTEST_XDIST_WORKER": "gw0"})
    assert out.returncode == 1
    assert "smoke_qwen3: live training cannot run under pytest-xdist; run without -n" in out.stdout


def test_curve_and_throughput_gates(tmp_path):
    """A run that diverged mid-way and recovered passes the reference rule but fails the curve tests; a run 30%
    slower fails the throughput gate, and one 30% faster asks for a baseline refresh."""
    import math

    def healthy(s):
        return 2.5 + 8.0 * math.exp(-s / 150)

    base_log = reference_log(tmp_path / "base.log", loss=healthy)
    base = tmp_path / "baselines.yaml"
    base.write_text("qwen3_8b:\n  final_loss: null\n")
    run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={base_log}", "--baselines", base, "--baseline-update",
              "--runs-dir", tmp_path / "runs")
    bad = reference_log(tmp_path / "bad.log", loss=lambda s: healthy(s) * (1.6 if 300 <= s < 400 else 1.0))
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={bad}", "--baselines", base, "--runs-dir",
                    tmp_path / "runs")
    assert "PASSED tests/acceptance/test_pretraining.py::test_final_loss_within_tolerance[qwen3_8b]" in out.stdout
    assert "FAILED tests/acceptance/test_pretraining.py::test_loss_curve_within_band[qwen3_8b]" in out.stdout
    assert "loss left the ±10% band around the baseline curve at steps [300, 310" in out.stdout
    assert "FAILED tests/acceptance/test_pretraining.py::test_loss_curve_correlates[qwen3_8b]" in out.stdout
    for factor, message in ((0.7, "-30.0% from the baseline's 131,072 (band -10% / +20%)"),
                            (1.3, "+30.0% from the baseline's 131,072 (band -10% / +20%; a gain this large asks")):
        log = reference_log(tmp_path / f"speed{factor}.log", loss=healthy, tokens=lambda s: 131072.0 * factor)
        out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={log}", "--baselines", base, "--runs-dir",
                        tmp_path / "runs")
        assert "FAILED tests/acceptance/test_pretraining.py::test_throughput_within_band[qwen3_8b]" in out.stdout
        assert message in out.stdout


def test_report_and_junit_properties(tmp_path, full_log):
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={full_log}", "--baselines", _baselines(tmp_path, 3.1),
                    "--runs-dir", tmp_path / "runs", "--junitxml", tmp_path / "junit.xml")
    (summary,) = (tmp_path / "runs/qwen3_8b").glob("recorded-*/report/summary.md")
    assert f"qwen3_8b: {summary}" in out.stdout  # pytest says where the report is
    text = summary.read_text()
    assert "| final loss | 3.002 |" in text and "| delta | -3.16% (tolerance ±5%) |" in text
    assert "| verdict (reference rule) | pass |" in text
    for name in ("loss.png", "throughput.png", "provenance.json"):
        assert (summary.parent / name).stat().st_size > 1000 or name == "provenance.json"
    assert (summary.parent / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    junit = (tmp_path / "junit.xml").read_text()
    assert '<property name="final_loss" value="3.002"' in junit
    assert '<property name="loss_delta_pct" value="-3.161"' in junit
    assert '<property name="verdict" value="pass"' in junit


def test_corrupt_baselines_is_one_line_not_a_traceback(tmp_path, full_log):
    base = tmp_path / "baselines.yaml"
    base.write_text("qwen3_8b:\n  final_loss: 3.0\n  tolerance: 0.05\n")  # measured, but no provenance
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={full_log}", "--baselines", base)
    assert out.returncode == 1
    assert "qwen-acceptance: " + str(base) + ": qwen3_8b: a measured baseline needs provenance field(s)" in out.stdout
    assert "Traceback" not in out.stdout and "raise AcceptanceError" not in out.stdout


SMOKE_RUNS = ROOT / "fixtures" / "smoke-runs"


def test_a_log_of_another_model_fails_conformance():
    out = run_suite("-m", "smoke_qwen3_moe", "--from-log", f"smoke_qwen3_moe={SMOKE}")
    assert "FAILED tests/acceptance/test_pretraining.py::test_run_follows_reference[smoke_qwen3_moe]" in out.stdout
    assert "the run differs from the reference configuration: steps: the run planned 200 (reference 120)" in out.stdout
    assert "model_config 'Qwen3Config8B' (reference 'Qwen3Config30B_A3B')" in out.stdout


def test_what_a_log_does_not_show_is_a_warning_not_a_silent_pass(tmp_path, full_log):
    out = run_suite("-m", "qwen3_8b", "--from-log", f"qwen3_8b={full_log}", "--baselines", _baselines(tmp_path, 3.1),
                    "--runs-dir", tmp_path / "runs")
    assert out.returncode == 0 and "8 passed" in out.stdout
    assert ("qwen3_8b: not verified from the log: seed, model shape, optimizer and precision (the log has no "
            "`[qwen-acceptance] resolved:` line)") in out.stdout
    (summary,) = (tmp_path / "runs/qwen3_8b").glob("recorded-*/report/summary.md")
    assert "| not verified (warning) | seed, model shape, optimizer and precision" in summary.read_text()


def test_baseline_update_takes_provenance_from_the_log_and_refuses_another_configuration(tmp_path):
    import yaml

    base = tmp_path / "baselines.yaml"
    base.write_text("smoke_qwen3:\n  final_loss: null\n")
    tp2 = SMOKE_RUNS / "smoke_qwen3-h200x2-tp2.log"
    out = run_suite("-m", "smoke_qwen3", "--from-log", f"smoke_qwen3={tp2}", "--baselines", base, "--baseline-update")
    assert "baseline updated" in out.stdout, out.stdout
    provenance = yaml.safe_load(base.read_text())["smoke_qwen3"]["provenance"]
    assert (provenance["gpus"], provenance["layout"], provenance["seed"]) == (2, "TP2 PP1 CP1", 1234)
    assert provenance["max_steps"] == 200 and provenance["global_batch_size"] == 16
    before = base.read_text()
    seed = SMOKE_RUNS / "smoke_qwen3-h200x1-seed4321.log"
    out = run_suite("-m", "smoke_qwen3", "--from-log", f"smoke_qwen3={seed}", "--baselines", base, "--baseline-update")
    assert ("not updating the baseline from a run that differs from the reference configuration: data.seed 4321 "
            "(reference 1234)") in out.stdout
    assert base.read_text() == before
