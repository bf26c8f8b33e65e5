"""SDPAttention on the CPU against a float64 reference of causal grouped-query attention (the GPU test compares it
with Megatron-Core's own local attention)."""

import math

import pytest
import torch
from attention_setup import config, init_parallel_state  # noqa: E402
from megatron.core.transformer.enums import AttnMaskType  # noqa: E402

from qwen_acceptance.run.attention import SDPAttention  # noqa: E402


def reference(q, k, v, causal, mask=None):
    """float64 attention, GQA by repeating the key/value groups: [s, b, h, d] in, [s, b, h·d] out."""
    s, b, h, d = q.shape
    rep = h // k.shape[2]
    q, k, v = (t.double().permute(1, 2, 0, 3) for t in (q, k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), -math.inf)
    if mask is not None:
        scores = scores.masked_fill(mask, -math.inf)
    return (scores.softmax(-1) @ v).permute(2, 0, 1, 3).reshape(s, b, h * d)


@pytest.fixture(scope="module", autouse=True)
def parallel_state():
    init_parallel_state("gloo")


@pytest.mark.parametrize("heads, groups", [(8, 2), (4, 4), (8, 1)])
def test_causal_grouped_query_matches_reference(heads, groups):
    torch.manual_seed(0)
    s, b, d = 48, 3, 32
    q, k, v = torch.randn(s, b, heads, d), torch.randn(s, b, groups, d), torch.randn(s, b, groups, d)
    attn = SDPAttention(config(heads, groups, d), 1, AttnMaskType.causal, "self")
    out = attn(q, k, v, attention_mask=None)
    assert out.shape == (s, b, heads * d)
    ref = reference(q, k, v, causal=True)
    assert ((out.double() - ref).norm() / ref.norm()).item() < 1e-5


def test_explicit_padding_mask():
    torch.manual_seed(1)
    s, b, h, d = 16, 2, 4, 16
    q, k, v = torch.randn(s, b, h, d), torch.randn(s, b, h, d), torch.randn(s, b, h, d)
    mask = torch.zeros(b, 1, s, s, dtype=torch.bool)
    mask[..., 12:] = True  # Megatron's convention: True = masked out
    attn = SDPAttention(config(h, h, d), 1, AttnMaskType.padding, "self")
    out = attn(q, k, v, attention_mask=mask)
    ref = reference(q, k, v, causal=False, mask=mask)
    assert ((out.double() - ref).norm() / ref.norm()).item() < 1e-5


def test_refuses_what_it_cannot_do():
    attn = SDPAttention(config(), 1, AttnMaskType.causal, "self")
    x = torch.randn(4, 1, 8, 32)
    with pytest.raises(NotImplementedError, match="no attention bias or packed sequences"):
        attn(x, x[:, :, :2], x[:, :, :2], None, attention_bias=torch.zeros(1))
    with pytest.raises(ValueError, match="context_parallel_size 1"):
        SDPAttention(config(context_parallel_size=2), 1, AttnMaskType.causal, "self")
