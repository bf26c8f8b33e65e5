"""The memory model against peaks measured on H200s (fixtures/bench logs), and its structure for 72B layouts."""

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from qwen_acceptance.judge import logparse
from qwen_acceptance.perf import flops, memory

BENCH = Path(__file__).resolve().parents[2] / "fixtures/bench"


def measured(name):
    """The Dims, batch and measured peak of a recorded probe (the suite's own log lines, not retyped numbers)."""
    log = logparse.parse_file(BENCH / name)
    model = log.shape
    dims = flops.Dims.from_config(SimpleNamespace(**model), model["seq_length"])
    data = log.resolved["data"]
    parallel = memory.Parallel(
        micro_batch=data["micro_batch_size"], microbatches=data["global_batch_size"] // data["micro_batch_size"]
    )
    peak = max(r["max_allocated_gib"] for r in log.peak_memory)
    return dims, parallel, peak


@pytest.mark.parametrize(
    "name",
    [
        "smoke_qwen3-bench-30steps.log",
        "qwen3_8b-4layers-hidden512-seq8192-ok.log",
        "smoke_qwen3-fullwidth-seq1024-ok.log",
        "qwen3_8b-8layers-gb8-h200.log",
        "qwen3_8b-16layers-gb16-h200.log",
        "qwen25_7b-16layers-gb8-h200.log",
    ],
)
def test_agrees_with_measured_h200_peaks_within_15_percent(name):
    dims, parallel, peak = measured(name)
    estimate = memory.estimate(dims, parallel)
    assert abs(estimate.peak_gib - peak) / peak < 0.15, (estimate, peak)


def two_gpu_probes():
    """`qwen-acceptance bench --json` results of a 12-layer qwen3_8b on 2× H200 (TP2, and TP1 with DP2)."""
    dims16, _, _ = measured("qwen3_8b-16layers-gb16-h200.log")
    dims = replace(dims16, layers=12)
    lines = (BENCH / "qwen3_8b-12layers-2gpu-h200.jsonl").read_text().splitlines()
    return dims, [json.loads(line) for line in lines]


def test_agrees_with_2_gpu_peaks_within_15_percent():
    dims, probes = two_gpu_probes()
    for probe in probes:
        assert flops.training_flops_per_token(dims) == probe["flops_per_token"]  # the same 12-layer model
        tp = int(probe["layout"].split("TP")[1].split("PP")[0])
        dp = probe["gpus"] // tp
        parallel = memory.Parallel(tp=tp, dp=dp, microbatches=probe["global_batch_size"] // dp)
        estimate = memory.estimate(dims, parallel)
        assert abs(estimate.peak_gib - probe["peak_memory_gib"]) / probe["peak_memory_gib"] < 0.15, (probe, estimate)


def test_fits_says_no_where_a_run_ran_out_of_memory():
    oom = BENCH / "qwen3_8b-16layers-gb8-mb2-oom-h200.log"
    assert "torch.OutOfMemoryError" in oom.read_text()
    dims, parallel, _ = measured("qwen3_8b-16layers-gb16-h200.log")
    h200 = 139.8  # GiB, as torch reports the H200's total in that log's OOM message
    assert not memory.fits(memory.estimate(dims, replace(parallel, micro_batch=2)), h200)  # the OOM run
    assert memory.fits(memory.estimate(dims, parallel), h200)  # micro batch 1 ran (102.6 GiB)


QWEN2_72B = flops.Dims(layers=80, hidden=8192, heads=64, groups=8, head_dim=128, ffn=29568, vocab=152064, seq=8192)


def test_72b_parameters_add_up():
    per_layer, embeddings = memory.parameters(QWEN2_72B)
    assert 72e9 < 80 * per_layer + embeddings < 73.5e9  # Qwen2-72B has 72.7 B parameters


def test_sequence_parallel_and_recompute_shrink_activations():
    base = memory.Parallel(tp=8, pp=4, dp=1, micro_batch=1, microbatches=64)
    plain = memory.estimate(QWEN2_72B, base)
    sp = memory.estimate(QWEN2_72B, memory.Parallel(**{**base.__dict__, "sp": True}))
    full = memory.estimate(QWEN2_72B, memory.Parallel(**{**base.__dict__, "sp": True, "recompute": True}))
    assert plain.static_gib == sp.static_gib == full.static_gib
    assert plain.activations_gib > sp.activations_gib > full.activations_gib
    assert sp.peak_gib < 80 < plain.peak_gib < 141  # the recipe's TP8 PP4 needs an H200-sized GPU without SP


def test_data_parallel_shards_only_the_optimizer():
    one = memory.estimate(QWEN2_72B, memory.Parallel(tp=8, pp=4, dp=1, sp=True, microbatches=64))
    two = memory.estimate(QWEN2_72B, memory.Parallel(tp=8, pp=4, dp=2, sp=True, microbatches=32))
    per_param_gib = one.params_per_rank / memory.GIB
    assert one.static_gib - two.static_gib == pytest.approx(6 * per_param_gib)  # 12 bytes over 2 ranks
