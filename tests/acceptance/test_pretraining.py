"""The reference's acceptance rules, once per model in the matrix (select one with ``pytest -m qwen3_8b``).

The ``training_run`` fixture reads a recorded log (--from-log / --logs-dir) or trains the model live where the
GPUs are there, and otherwise skips with the reason. The final-loss test is the verdict of record; the curve and
throughput tests flag what the last step alone cannot show.
"""

import math
import warnings

from qwen_acceptance import verdict


def test_run_follows_reference(training_run, acceptance, record_property):
    """The judged run is the reference run: same global batch, steps, seed, learning-rate schedule, optimizer,
    precision and model shape; only the layout may differ, on no fewer GPUs."""
    result = acceptance.judge_conformance(training_run, record_property)
    if result.unverified:
        warnings.warn(f"{training_run.spec.name}: not verified from the log: {'; '.join(result.unverified)}")
    assert result.conforms, (f"{training_run.spec.name}: the run differs from the reference configuration: "
                             + "; ".join(result.differences))


def test_final_step_reached(training_run):
    check = verdict.check_final_step(training_run.log, training_run.spec.final_step)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_loss_finite(training_run):
    check = verdict.check_finite_loss(training_run.log)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_final_loss_within_tolerance(training_run, acceptance, record_property):
    """The verdict of record: |loss - baseline| / baseline within the tolerance at the last step."""
    check = acceptance.judge_final_loss(training_run, record_property)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_loss_curve_within_band(training_run, acceptance, record_property):
    """Every 10-step mean within the baseline curve's band (a run that diverged and recovered is caught)."""
    check = acceptance.judge_curve_band(training_run, record_property)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_loss_curve_correlates(training_run, acceptance, record_property):
    check = acceptance.judge_curve_correlation(training_run, record_property)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_throughput_within_band(training_run, acceptance, record_property):
    """tokens/s/GPU over the reference window within the baseline's band (slower fails; much faster asks for a
    baseline refresh)."""
    check = acceptance.judge_throughput(training_run, record_property)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_throughput_recorded(training_run, acceptance, benchmark):
    throughput = acceptance.record_throughput(training_run, benchmark)
    assert math.isfinite(throughput.mean) and throughput.mean > 0


def test_record_baseline(training_run, acceptance):
    """Only under --baseline-update (the other judging tests are then skipped): records a complete clean run that
    follows the reference, and fails on purpose so an updating session is never green."""
    acceptance.update_baseline(training_run)
