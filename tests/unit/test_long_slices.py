"""The 300-step full-width slices trained on an H200 after the DDP stream-order fix (BENCHMARKS.md, "Long
full-width slices after the fix"), replayed through the suite's own checks: a change to the parser or the checks
that would call these clean runs broken, or a log that no longer shows the fix, fails here."""

import statistics
from pathlib import Path

import pytest

from qwen_acceptance.judge import curves, logparse, metrics, verdict

LONG = Path(__file__).resolve().parents[2] / "fixtures" / "bench" / "long"
LOGS = sorted(LONG.glob("*.log"))
FIX = "DDP built in stream order with the default stream"


def test_all_three_widths_are_kept_and_the_deepest_dense_slice_one_gpu_holds():
    assert sorted({p.name.split("-")[0] for p in LOGS}) == ["qwen25_7b", "qwen3_30b_a3b", "qwen3_8b"]
    depth = {p.name: logparse.parse_file(p).shape["num_layers"] for p in LOGS}
    assert depth["qwen3_8b-16layers-gb2-300steps-h200.log"] == 16, depth  # 102.6 GiB of the H200's 139


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name.split("-")[0])
def test_long_slice_passes_the_suites_checks(path):
    log = logparse.parse_file(path)
    assert log.planned_last_step == 299
    for check in (verdict.check_final_step(log, 299), verdict.check_finite_loss(log)):
        assert check.passed, check.detail
    assert not log.unreadable_lines
    assert any(FIX in item for item in log.resolved["runtime_workarounds"])
    # Full width and the sequence length of the model the slice was cut from.
    model = log.shape
    assert model["hidden_size"] in (4096, 3584, 2048) and model["seq_length"] in (8192, 4096)
    # The loss falls: the sparse curve's last points sit far below its first.
    curve = curves.sparse(log)
    assert statistics.fmean(curve.loss[-5:]) < 0.5 * curve.loss[0]
    assert metrics.summarize(log).throughput is not None
