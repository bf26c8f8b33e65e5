"""The fail-fast rule on recorded H200 smoke logs, without processes: no honest rerun is ever stopped, and broken
runs derived from a real log (losses scaled by a stated factor: no broken run is recorded yet) stop at the step
BENCHMARKS.md quotes. The launcher's real-process replay is in test_launch.py."""

from pathlib import Path

import pytest
from nemolog import scale_loss

from qwen_acceptance import models
from qwen_acceptance.judge import baselines, curves, failfast, logparse

ROOT = Path(__file__).resolve().parents[2]
BASELINES = baselines.load(ROOT / "baselines.yaml")
MATRIX = models.load_matrix()
BASELINE_RUN = ROOT / "fixtures/logs/smoke_qwen3.log"
STOP_LINE = curves.DEFAULT_BAND + failfast.MARGIN


def watch_log(lines, name="smoke_qwen3", *, stop=True, points=failfast.POINTS, margin=failfast.MARGIN):
    """Feed a log to a Watch as the launcher does, step by step; returns the watch, the step it stopped at (or
    None), each completed point's deviation and the live status after each step."""
    watch = failfast.Watch(BASELINES[name], MATRIX[name], stop=stop, points=points, margin=margin)
    parser = logparse.LogParser("replay")
    deviations, status = {}, {}
    for line in lines:
        if (record := parser.feed_line(line)) is None:
            continue
        watch.update(parser.log, record)
        status[record.step] = watch.status()
        if watch.point is not None:
            deviations[watch.point.step] = watch.point.deviation
        if watch.stopped:
            return watch, record.step, deviations, status
    return watch, None, deviations, status


# Each honest rerun's worst completed point (signed deviation from the baseline's, at its step); the margin it keeps
# to the ±15% stop line is 15% minus its size: 8.9 points for another seed, 13.7 or more for a layout change.
HONEST = [
    ("smoke_qwen3-h200x1-seed1234-rerun.log", "smoke_qwen3", 0.0, None),
    ("smoke_qwen3-h200x1-seed4321.log", "smoke_qwen3", +0.0612, 190),
    ("smoke_qwen3-h200x2-dp2.log", "smoke_qwen3", +0.0008, 180),
    ("smoke_qwen3-h200x2-tp2.log", "smoke_qwen3", +0.0127, 190),
    ("smoke_qwen3_moe-h200x1-seed1234-rerun.log", "smoke_qwen3_moe", 0.0, None),
    ("smoke_qwen3_moe-h200x1-seed4321.log", "smoke_qwen3_moe", -0.0124, 100),
]


@pytest.mark.parametrize("log, spec, worst, at", HONEST, ids=[h[0] for h in HONEST])
def test_no_honest_rerun_is_stopped(log, spec, worst, at):
    lines = (ROOT / "fixtures/smoke-runs" / log).read_text().splitlines(keepends=True)
    watch, stopped_at, deviations, _ = watch_log(lines, spec)
    assert stopped_at is None and watch.stopped is None
    assert len(deviations) == MATRIX[spec].max_steps // curves.STRIDE  # every completed point was judged
    step = max(deviations, key=lambda s: abs(deviations[s]))
    assert deviations[step] == pytest.approx(worst, abs=5e-4) and (at is None or step == at)
    assert STOP_LINE - abs(worst) >= 0.085  # the margin this rerun keeps
    # Not one honest point is past even the band: one point in a row at the band itself would stop none of them.
    assert watch_log(lines, spec, points=1, margin=0.0)[1] is None


# (factor, first step, last step) -> the step at which the run is stopped, or None.
BROKEN = [
    pytest.param(2.0, 0, None, 29, id="x2-from-step-0"),  # twice the baseline from the first steps (init std x10)
    pytest.param(0.8, 50, None, 79, id="x0.8-from-step-50"),  # 20% below from step 50 (the direction of lr x3)
    pytest.param(1.12, 0, None, None, id="x1.12-inside-the-stop-line"),  # outside the band: fails at the end only
    pytest.param(2.0, 100, 119, None, id="x2-spike-steps-100-119"),  # two points out, then back: K=3 keeps it
]


@pytest.mark.parametrize("factor, first, last, stop_step", BROKEN)
def test_derived_broken_runs(factor, first, last, stop_step):
    lines = scale_loss(BASELINE_RUN.read_text().splitlines(keepends=True), factor, first, last)
    watch, stopped_at, deviations, _ = watch_log(lines)
    assert stopped_at == stop_step
    # Every run here leaves the band: the band test (the same comparison) fails each one at the end.
    assert any(not curves.within(d, curves.DEFAULT_BAND) for d in deviations.values())


def test_the_stop_names_the_step_and_both_values():
    lines = scale_loss(BASELINE_RUN.read_text().splitlines(keepends=True), 2.0)
    watch, stopped_at, _, status = watch_log(lines)
    assert watch.stopped == (
        "fail-fast: the loss curve was beyond ±15% of the baseline's for 3 points in a row; at "
        "step 20 (mean of steps 20..29) the run's 18.04 against the baseline's 9.022 (+100.0%; "
        "band ±10%)"
    )
    assert status[9] == "curve @0: 23.03 vs baseline 11.52 (+100.0%) outside band (1 of 3 past ±15%)"
    assert status[8] == ""  # no point completed yet


def test_live_status_follows_the_last_completed_point():
    lines = scale_loss(BASELINE_RUN.read_text().splitlines(keepends=True), 2.0, 100, 119)
    _, _, _, status = watch_log(lines)
    assert status[99] == "curve @90: 4.057 vs baseline 4.057 (+0.0%) on track"
    assert status[119] == "curve @110: 7.32 vs baseline 3.66 (+100.0%) outside band (2 of 3 past ±15%)"
    assert status[128] == status[119]  # until the next point completes
    assert status[129] == "curve @120: 3.427 vs baseline 3.427 (+0.0%) on track"


def test_without_stopping_the_status_still_says_outside_band():
    lines = scale_loss(BASELINE_RUN.read_text().splitlines(keepends=True), 2.0)
    watch, stopped_at, _, status = watch_log(lines, stop=False)
    assert stopped_at is None and watch.stopped is None
    assert status[199] == "curve @190: 5.685 vs baseline 2.843 (+100.0%) outside band"


@pytest.mark.parametrize(
    "log, spec, warning",
    [
        # Two GPUs, TP2: 40% slower than the 1-GPU baseline, far past the band and the noise.
        (
            "smoke_qwen3-h200x2-tp2.log",
            "smoke_qwen3",
            "SLOW: 70,623 tok/s/GPU over steps 10..59, -37.6% from the baseline (band -20%)",
        ),
        ("smoke_qwen3-h200x2-dp2.log", "smoke_qwen3", None),  # 18% slower: inside the band
        ("smoke_qwen3-h200x1-seed1234-rerun.log", "smoke_qwen3", None),  # 7% slower: run-to-run noise
        ("smoke_qwen3_moe-h200x1-seed1234-rerun.log", "smoke_qwen3_moe", None),
    ],
)
def test_throughput_warns_only_when_unambiguous(log, spec, warning):
    lines = (ROOT / "fixtures/smoke-runs" / log).read_text().splitlines(keepends=True)
    _, stopped_at, _, status = watch_log(lines, spec)
    assert stopped_at is None  # throughput never stops a run
    warnings = {step: text[text.index("SLOW") :] for step, text in status.items() if "SLOW" in text}
    if warning is None:
        assert not warnings
    else:  # from the 50th step of the reference window (steps 10..59) on, not before
        assert min(warnings) == 59 and warnings[59] == warning
