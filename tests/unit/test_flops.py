"""The FLOPs-per-token formula against counts done by hand, and MFU's arithmetic."""

import pytest

from qwen_acceptance import flops


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
    assert flops.training_flops_per_token(dense) - flops.training_flops_per_token(moe) == 3 * 48 * (
        mlp_dense - mlp_moe)


def test_mfu_and_unknown_gpu():
    assert flops.mfu(10_000.0, 5.0e10, 500.0) == pytest.approx(1.0)
    assert flops.peak_tflops("A GPU nobody measured") is None
