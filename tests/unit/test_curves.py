"""Loss curves: sparse 10-step means, band and correlation against a baseline curve, and the schema in
baselines.yaml."""

import math

import pytest
from nemolog import write_log

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import baselines, curves, logparse


def healthy(step):
    return 2.5 + 8.0 * math.exp(-step / 150) + 0.05 * math.sin(step)


def diverged(step):
    """Diverges at step 300, recovers by 400: the last step is as healthy as the baseline's."""
    return healthy(step) * (1.6 if 300 <= step < 400 else 1.0)


def curve_of(tmp_path, name, loss, steps=1000):
    return curves.sparse(logparse.parse_file(write_log(tmp_path / name, steps, loss=loss)))


def test_sparse_curve_points_are_ten_step_means_plus_last(tmp_path):
    curve = curve_of(tmp_path, "a.log", lambda s: float(s), steps=25)
    assert curve.steps == (0, 10, 20, 24)
    assert curve.loss == (4.5, 14.5, 22.0, 24.0)  # steps 20..24 make the last window; step 24 on its own


def test_a_diverged_and_recovered_run_is_caught(tmp_path):
    base = curve_of(tmp_path, "base.log", healthy)
    bad = curve_of(tmp_path, "bad.log", diverged)
    assert bad.loss[-1] == pytest.approx(base.loss[-1])  # the reference rule alone would pass it
    result = curves.compare(bad, base, curves.DEFAULT_BAND)
    assert result.outside == tuple(range(300, 400, 10)) and result.worst_deviation == pytest.approx(0.6, abs=0.01)
    assert result.correlation < curves.DEFAULT_MIN_CORRELATION


def test_a_healthy_rerun_passes(tmp_path):
    base = curve_of(tmp_path, "base.log", healthy)
    again = curve_of(tmp_path, "again.log", lambda s: healthy(s) * 1.03)
    result = curves.compare(again, base, curves.DEFAULT_BAND)
    assert result.outside == () and result.correlation > 0.999


def test_nan_points_are_outside_the_band(tmp_path):
    base = curve_of(tmp_path, "base.log", healthy, steps=100)
    bad = curve_of(tmp_path, "nan.log", lambda s: math.nan if s == 55 else healthy(s), steps=100)
    result = curves.compare(bad, base, curves.DEFAULT_BAND)
    assert 50 in result.outside and math.isnan(result.correlation)


def test_too_few_common_points(tmp_path):
    base = curve_of(tmp_path, "base.log", healthy, steps=100)
    short = curve_of(tmp_path, "short.log", healthy, steps=15)
    with pytest.raises(AcceptanceError, match="only 2 curve points in common"):
        curves.compare(short, base, 0.1)


@pytest.mark.parametrize(
    "entry, message",
    [
        ("curve: {steps: [0, 10], loss: [2.0]}", "field 'curve' must be"),
        ("curve: {steps: [10, 0], loss: [2.0, 1.0]}", "field 'curve' must be"),
        ("curve: {steps: [0, 10], loss: [2.0, .nan]}", "field 'curve' must be"),
        ("curve_band: 5", "field 'curve_band' is a fraction"),
        ("throughput_band: [0.1, 0.2]", r"field 'throughput_band' must be \[low, high\]"),
        ("throughput_band: 0.1", r"field 'throughput_band' must be \[low, high\]"),
    ],
)
def test_curve_and_band_fields_are_validated(tmp_path, entry, message):
    path = tmp_path / "b.yaml"
    path.write_text(f"m:\n  {entry}\n")
    with pytest.raises(AcceptanceError, match=message):
        baselines.load(path)


def test_update_writes_the_curve_on_two_lines(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("m:\n  final_loss: null\n")
    curve = curves.Curve((0, 10, 19), (10.123456, 5.0, 4.5))
    baselines.apply_updates(
        path, {"m": baselines.Update(4.5, 100.0, {"date": "d", "gpus": 1, "log_sha256": "x"}, curve)}
    )
    text = path.read_text()
    assert "    steps: [0, 10, 19]\n    loss: [10.1235, 5.0, 4.5]\n" in text
    assert baselines.load(path)["m"].curve == curves.Curve((0, 10, 19), (10.1235, 5.0, 4.5))
