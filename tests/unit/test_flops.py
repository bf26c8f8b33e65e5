"""The FLOPs-per-token formula against counts done by hand, and MFU's arithmetic."""

import pytest

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.perf import flops, memory


def test_dense_qwen3_8b_by_hand():
    d = flops.Dims(layers=36, hidden=4096, heads=32, groups=8, head_dim=128, ffn=12288, vocab=151936, seq=8192)
    per_layer = 2 * 4096 * (4096 + 2 * 1024) + 2 * 8192 * 4096 + 2 * 4096 * 4096 + 6 * 4096 * 12288
    assert flops.training_flops_per_token(d) == 3 * (36 * per_layer + 2 * 4096 * 151936)
    # Close to the 6·N·tokens rule of thumb (N ≈ 8.2e9 with embeddings) once attention's s-term is added.
    assert 6 * 8.19e9 < flops.training_flops_per_token(d) < 6 * 8.19e9 * 1.15


def test_moe_counts_only_the_routed_experts():
    dense = flops.Dims(layers=48, hidden=2048, heads=32, groups=4, head_dim=128, ffn=6144, vocab=151936, seq=4096)
    moe = flops.Dims(**{**dense.__dict__, "experts": 128, "topk": 8, "expert_ffn": 768})
    mlp_dense, mlp_moe = 6 * 2048 * 6144, 2 * 2048 * 128 + 8 * 6 * 2048 * 768
    assert flops.training_flops_per_token(dense) - flops.training_flops_per_token(moe) == 3 * 48 * (mlp_dense - mlp_moe)


def test_mfu_and_unknown_gpu():
    assert flops.mfu(10_000.0, 5.0e10, 500.0) == pytest.approx(1.0)
    assert flops.peak_tflops("A GPU nobody measured") is None


@pytest.mark.parametrize(
    "entry, field, read",
    [
        ("{bf16_dense_tflops: fast, memory_gib: 80}", "bf16_dense_tflops", lambda p: flops.peak_tflops("Some GPU", p)),
        ("{bf16_dense_tflops: 700, memory_gib: -1}", "memory_gib", memory.capacities),
        ("just a name", "bf16_dense_tflops", lambda p: flops.peak_tflops("Some GPU", p)),
        ("just a name", "memory_gib", memory.capacities),
    ],
)
def test_a_wrong_gpus_yaml_entry_is_named(tmp_path, entry, field, read):
    path = tmp_path / "gpus.yaml"
    path.write_text(f"Some GPU: {entry}\n")
    with pytest.raises(AcceptanceError, match=f"gpus.yaml: Some GPU: {field} must be a positive number"):
        read(path)


def test_capacities_list_only_gpus_with_a_measured_memory(tmp_path):
    path = tmp_path / "gpus.yaml"
    path.write_text("A: {bf16_dense_tflops: 700, memory_gib: 79.1}\nB: {bf16_dense_tflops: 900}\n")
    assert memory.capacities(path) == {"A": 79.1}


def test_probe_result_from_a_recorded_h200_bench_log():
    """`qwen-acceptance bench`'s numbers, from the log of a real probe on 1× H200 (fixtures/bench)."""
    from pathlib import Path

    from qwen_acceptance import models
    from qwen_acceptance.judge import logparse
    from qwen_acceptance.perf import probe

    path = Path(__file__).resolve().parents[2] / "fixtures/bench/smoke_qwen3-bench-30steps.log"
    spec = models.get_model("smoke_qwen3").with_changes(max_steps=30)
    result = probe.result(spec, logparse.parse_file(path), path)
    assert (result["trim"], result["window"]) == (3, [3, 26])  # a tenth of a short run, at least 3 steps
    assert result["peak_memory_gib"] == 6.7 and result["attention"] == "sdpa" and result["gpu"] == "NVIDIA H200"
    d = flops.Dims(layers=4, hidden=512, heads=8, groups=4, head_dim=64, ffn=1536, vocab=151936, seq=1024)
    assert result["flops_per_token"] == flops.training_flops_per_token(d)
    assert result["mfu"] == pytest.approx(result["tokens_per_sec_per_gpu"] * result["flops_per_token"] / 781.6e12)
