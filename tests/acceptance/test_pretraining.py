"""The reference's acceptance rules, once per model in the matrix (select one with ``pytest -m qwen3_8b``).

The ``training_run`` fixture reads a recorded log (--from-log / --logs-dir) or skips with the reason.
"""

import math

from qwen_acceptance import verdict


def test_final_step_reached(training_run):
    check = verdict.check_final_step(training_run.log, training_run.spec.final_step)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_loss_finite(training_run):
    check = verdict.check_finite_loss(training_run.log)
    assert check.passed, f"{training_run.spec.name}: {check.detail}"


def test_final_loss_within_tolerance(training_run, acceptance):
    acceptance.judge_final_loss(training_run)


def test_throughput_recorded(training_run, acceptance, benchmark):
    throughput = acceptance.record_throughput(training_run, benchmark)
    assert math.isfinite(throughput.mean) and throughput.mean > 0
