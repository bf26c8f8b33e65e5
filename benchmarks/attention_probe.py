"""Does attention alone go non-finite at qwen3_8b's shape (32 heads × 128, 8 query groups) at seq 8192?

Runs SDPAttention (each SDPA backend forced in turn) and Megatron-Core's local DotProductAttention forward and
backward in bf16 at the given sequence lengths, and prints whether outputs and gradients are finite. The
[heads, s, s] scores of the local path have 32·8192² = 2³¹ elements at seq 8192.
Usage: python benchmarks/attention_probe.py [SEQ ...]   (needs a CUDA GPU)
"""

import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from attention_setup import config, init_parallel_state  # noqa: E402


def run(module, seq, heads=32, groups=8, dim=128, backend=None):
    from megatron.core.transformer.enums import AttnMaskType

    cfg = config(heads, groups, dim, bf16=True, params_dtype=torch.bfloat16)
    q, k, v = (torch.randn(seq, 1, n, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for n in (heads, groups, groups))
    mask = torch.ones(1, 1, seq, seq, dtype=torch.bool, device="cuda").triu(1)
    attn = module(cfg, 1, AttnMaskType.causal, "self").cuda()
    try:
        if backend is None:
            out = attn(q, k, v, attention_mask=mask)
        else:
            with sdpa_kernel([backend]):
                out = attn(q, k, v, attention_mask=mask)
        out.float().pow(2).mean().backward()
    except RuntimeError as exc:
        return f"error: {str(exc).splitlines()[0][:90]}"
    finite = [bool(t.isfinite().all()) for t in (out, q.grad, k.grad, v.grad)]
    return "finite" if all(finite) else f"NON-FINITE (out, dq, dk, dv) = {finite}"


if __name__ == "__main__":
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    from qwen_acceptance.attention import SDPAttention

    init_parallel_state("nccl")
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    model_parallel_cuda_manual_seed(1234)
    for seq in [int(a) for a in sys.argv[1:]] or [4096, 8192]:
        torch.manual_seed(0)
        for name, backend in (("sdpa auto", None), ("sdpa flash", SDPBackend.FLASH_ATTENTION),
                              ("sdpa efficient", SDPBackend.EFFICIENT_ATTENTION), ("sdpa math", SDPBackend.MATH)):
            print(f"seq {seq} {name:15s} {run(SDPAttention, seq, backend=backend)}", flush=True)
            torch.cuda.empty_cache()
        print(f"seq {seq} {'local':15s} {run(DotProductAttention, seq)}", flush=True)
        torch.cuda.empty_cache()
