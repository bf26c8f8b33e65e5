"""The reference rules: final loss at the last step, throughput mean without the first and last 10 steps."""

import math
import statistics
from pathlib import Path

import pytest
from nemolog import step_line, write_log

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import logparse, metrics

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_throughput_window_drops_first_and_last_ten(tmp_path):
    log = logparse.parse_file(write_log(tmp_path / "r.log", 40, tokens=lambda s: 1000.0 * (s + 1)))
    tp = metrics.throughput(log)
    assert (tp.first_step, tp.last_step, tp.steps_used) == (10, 29, 20)
    assert tp.mean == pytest.approx(statistics.fmean(1000.0 * (s + 1) for s in range(10, 30)))
    assert not tp.derived
    assert len(tp.step_times) == 20


def test_throughput_of_real_log_by_hand():
    path = FIXTURES / "nemo25/nemo25-h200-tiny-qwen3-dense-60steps.log"
    values = [
        float(line.split("tokens_per_sec_per_gpu: ")[1].split(" ")[0])
        for line in path.read_text().splitlines()
        if line.startswith("Training epoch")
    ]
    tp = metrics.throughput(logparse.parse_file(path))
    assert tp.mean == pytest.approx(statistics.fmean(values[10:-10]))
    assert tp.steps_used == 40


def test_throughput_sorts_by_step_after_restart():
    # A restart re-logs steps 15..24 with new speeds: the window (steps 10..19) counts the last occurrence.
    lines = [step_line(s, 29, 5.0, tokens=100.0) for s in range(25)]
    lines += [step_line(s, 29, 5.0, tokens=200.0) for s in range(15, 30)]
    tp = metrics.throughput(logparse.parse_text("\n".join(lines) + "\n"))
    assert tp.steps_used == 10 and tp.mean == pytest.approx(150.0)


def test_throughput_needs_more_than_twenty_steps(tmp_path):
    log = logparse.parse_file(write_log(tmp_path / "r.log", 20))
    with pytest.raises(AcceptanceError, match="20 steps logged"):
        metrics.throughput(log)


def test_throughput_derived_when_field_absent(tmp_path):
    log = logparse.parse_file(write_log(tmp_path / "r.log", 30, tokens=None, seconds=lambda s: 2.0))
    with pytest.raises(AcceptanceError, match="no tokens_per_sec_per_gpu"):
        metrics.throughput(log)
    tp = metrics.throughput(log, seq_length=4096, gpus=8)
    assert tp.derived and tp.mean == pytest.approx(16 * 4096 / (8 * 2.0))


def test_derivation_matches_reference_excerpt():
    # The reference: 32 · 4096 / (8 · 2.389) = 6859, the printed tokens_per_sec_per_gpu.
    rec = logparse.parse_file(FIXTURES / "logs/reference-excerpt.log").steps[527]
    derived = rec.fields["global_batch_size"] * 4096 / (8 * rec.fields["train_step_timing in s"])
    assert derived == pytest.approx(rec.fields["tokens_per_sec_per_gpu"], rel=1e-3)


def test_final_loss_at_last_step(tmp_path):
    log = logparse.parse_file(write_log(tmp_path / "r.log", 1000, loss=lambda s: 3.0 + 1.0 / (s + 1)))
    assert metrics.final_loss(log, 999) == pytest.approx(3.001)


def test_final_loss_not_reached_is_an_error(tmp_path):
    log = logparse.parse_file(write_log(tmp_path / "r.log", 500))
    with pytest.raises(AcceptanceError, match="did not reach global_step 999 .last step logged: 499"):
        metrics.final_loss(log, 999)


def test_non_finite_steps(tmp_path):
    log = logparse.parse_file(write_log(tmp_path / "r.log", 30, loss=lambda s: math.nan if s in (3, 7) else 2.0))
    assert metrics.non_finite_steps(log) == [3, 7]


def test_non_finite_tokens_in_window(tmp_path):
    log = logparse.parse_file(write_log(tmp_path / "r.log", 30, tokens=lambda s: math.inf if s == 15 else 1.0))
    with pytest.raises(AcceptanceError, match="not finite at steps \\[15\\]"):
        metrics.throughput(log)


def test_summary_json_keys(tmp_path):
    summary = metrics.summarize(logparse.parse_file(write_log(tmp_path / "r.log", 30)))
    data = summary.to_json()
    assert data["last_step"] == 29 and data["throughput_steps"] == 10
    assert data["final_loss"] == pytest.approx(10.0 - 29 * 0.005, abs=1e-3)
    assert data["tokens_per_sec_per_gpu"] == pytest.approx(statistics.fmean(1.0e5 + s for s in range(10, 20)), rel=1e-3)
