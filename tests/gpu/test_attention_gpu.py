"""On a GPU: SDPAttention agrees with Megatron-Core's local DotProductAttention, forward and gradients, in bf16."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("s, heads, groups, d", [(256, 8, 2, 64), (1024, 16, 4, 128), (512, 8, 8, 64)])
def test_sdpa_matches_local_attention(s, heads, groups, d):
    from attention_setup import config, init_parallel_state
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from qwen_acceptance.run.attention import SDPAttention

    init_parallel_state("nccl")
    model_parallel_cuda_manual_seed(1234)
    cfg = config(heads, groups, d, bf16=True, params_dtype=torch.bfloat16)
    b = 2
    mask = torch.ones(b, 1, s, s, dtype=torch.bool, device="cuda").triu(1)  # what the data module provides
    results = []
    for module in (DotProductAttention, SDPAttention):
        torch.manual_seed(0)
        q, k, v = (
            torch.randn(s, b, n, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            for n in (heads, groups, groups)
        )
        attn = module(cfg, 1, AttnMaskType.causal, "self").cuda()
        out = attn(q, k, v, attention_mask=mask)
        out.float().pow(2).sum().backward()
        results.append([out.detach().float(), q.grad.float(), k.grad.float(), v.grad.float()])
    for name, local, sdpa in zip(("out", "dq", "dk", "dv"), *results, strict=True):
        rel = ((sdpa - local).norm() / local.norm()).item()
        assert rel < 2e-2, f"{name}: relative difference {rel:.2e}"
