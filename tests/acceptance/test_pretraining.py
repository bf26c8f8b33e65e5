"""The reference's acceptance rules, once per model in the matrix (select one with ``pytest -m qwen3_8b``).

``training_run`` is the model's run: a recorded log (--from-log / --logs-dir), or a live run where the GPUs are
there, else skipped with the reason. ``baseline`` is its entry in baselines.yaml. Each test is one rule from
``qwen_acceptance.judge.verdict``; ``record`` keeps the numbers behind it for the report and JUnit. The final-loss
test is the verdict of record; the curve and throughput tests flag what the last step alone cannot show.
"""

import math
import warnings

import pytest

from qwen_acceptance.judge import record as baseline_record
from qwen_acceptance.judge import verdict


def test_run_follows_reference(training_run, record):
    """The judged run is the reference run: same global batch, steps, seed, learning-rate schedule, optimizer,
    precision and model shape; only the layout may differ, on no fewer GPUs. What the log does not show is a
    warning."""
    check = record(verdict.check_conformance(training_run.conformance))
    for what in check.values["conformance_unverified"]:
        warnings.warn(f"{training_run.spec.name}: not verified from the log: {what}", stacklevel=1)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_final_step_reached(training_run):
    """A run that stopped early is a failure, never a pass."""
    check = verdict.check_final_step(training_run.log, training_run.spec.final_step)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_loss_finite(training_run):
    """No step logged a NaN or infinite loss, even one it recovered from."""
    check = verdict.check_finite_loss(training_run.log)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_final_loss_within_tolerance(training_run, baseline, record):
    """The verdict of record: |loss - baseline| / baseline within the tolerance (5%) at the last step."""
    check = record(verdict.check_final_loss(training_run.log, training_run.spec, baseline))
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_loss_curve_within_band(training_run, baseline, baselines_path, record):
    """Every 10-step mean within the baseline curve's band: a run that diverged and recovered is caught."""
    check = record(verdict.check_curve_band(training_run.log, baseline, baselines_path))
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_loss_curve_correlates(training_run, baseline, baselines_path, record):
    """The run's curve has the baseline's shape (correlation at least the baseline's minimum)."""
    check = record(verdict.check_curve_correlation(training_run.log, baseline, baselines_path))
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_throughput_within_band(training_run, baseline, baselines_path, record):
    """tokens/s/GPU over the reference window within the baseline's band (slower fails; much faster asks for a
    baseline refresh)."""
    check = record(verdict.check_throughput(training_run.throughput, baseline, baselines_path))
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_throughput_recorded(throughput_benchmark):
    """The steady window's real step times are pytest-benchmark's rounds (--benchmark-json, --benchmark-compare)."""
    assert math.isfinite(throughput_benchmark.mean) and throughput_benchmark.mean > 0


def test_record_baseline(training_run, baselines_path, baseline_diffs):
    """Only under --baseline-update (the judging tests are then skipped): records a complete clean run that follows
    the reference, and fails on purpose so that an updating session is never green."""
    run = training_run
    diff = baseline_record.record_baseline(
        baselines_path,
        run.spec,
        run.log,
        run.log_path,
        origin=run.origin,
        conforms=run.conformance,
        throughput=run.throughput_if_any(),
    )
    baseline_diffs.append(diff)
    pytest.fail(
        f"{run.spec.name}: baseline updated in {baselines_path} (a session that updates is never green; "
        f"rerun without --baseline-update to judge against it)\n{diff}",
        pytrace=False,
    )
