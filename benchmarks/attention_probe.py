"""Does core attention alone go non-finite at qwen3_8b's shape (32 heads × 128, 8 query groups)?

Runs SDPAttention (each SDPA backend forced in turn) and Megatron-Core's local DotProductAttention forward and
backward in bf16 and prints whether the output and the gradients are finite, with their largest magnitudes.
Inputs are random at the given sequence lengths, or, with ``--replay FILE``, the query, key, value and output
gradient that a real run handed to core attention (``benchmarks/nonfinite_trace.py --dump-attention FILE``).
Usage: python benchmarks/attention_probe.py [SEQ ...] | --replay FILE   (needs a CUDA GPU)
"""

import argparse
import contextlib
import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from attention_setup import config, init_parallel_state  # noqa: E402

BACKENDS = (
    ("sdpa auto", None),
    ("sdpa flash", SDPBackend.FLASH_ATTENTION),
    ("sdpa efficient", SDPBackend.EFFICIENT_ATTENTION),
    ("sdpa cudnn", SDPBackend.CUDNN_ATTENTION),
    ("sdpa math", SDPBackend.MATH),
)


def run(module, inputs, grad_output=None, backend=None):
    """Forward and backward once; ``grad_output`` None means the gradient of mean(out²)."""
    from megatron.core.transformer.enums import AttnMaskType

    q, k, v = (t.detach().clone().requires_grad_() for t in inputs)
    seq, heads, groups, dim = q.shape[0], q.shape[2], k.shape[2], q.shape[3]
    cfg = config(heads, groups, dim, bf16=True, params_dtype=torch.bfloat16)
    mask = torch.ones(1, 1, seq, seq, dtype=torch.bool, device="cuda").triu(1)
    attn = module(cfg, 1, AttnMaskType.causal, "self").cuda()
    try:
        with contextlib.nullcontext() if backend is None else sdpa_kernel([backend]):
            out = attn(q, k, v, attention_mask=mask)
            if grad_output is None:
                out.float().pow(2).mean().backward()
            else:
                out.backward(grad_output.reshape(out.shape))
    except RuntimeError as exc:
        return f"error: {str(exc).splitlines()[0][:90]}"
    parts = []
    for name, t in (("out", out), ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)):
        finite = bool(t.isfinite().all())
        parts.append(
            f"{name} {t.float().abs().max().item():.3g}"
            if finite
            else f"{name} NON-FINITE ({int((~t.isfinite()).sum())} elements)"
        )
    return ", ".join(parts)


def probe(label, inputs, grad_output=None):
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    from qwen_acceptance.run.attention import SDPAttention

    for name, backend in BACKENDS:
        print(f"{label} {name:15s} {run(SDPAttention, inputs, grad_output, backend)}", flush=True)
        torch.cuda.empty_cache()
    print(f"{label} {'local':15s} {run(DotProductAttention, inputs, grad_output)}", flush=True)
    torch.cuda.empty_cache()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seq", nargs="*", type=int, default=[4096, 8192])
    parser.add_argument("--replay", type=Path, help="a dump from nonfinite_trace.py --dump-attention")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
    init_parallel_state("nccl")
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    model_parallel_cuda_manual_seed(1234)
    if args.replay:
        saved = torch.load(args.replay, map_location="cuda")
        inputs = (saved["query"], saved["key"], saved["value"])
        for name, t in (*zip(("query", "key", "value"), inputs, strict=True), ("grad_output", saved["grad_output"])):
            print(
                f"replay {name:11s} {tuple(t.shape)} {t.dtype} max|x| {t.float().abs().max().item():.4g} "
                f"stride {t.stride()}",
                flush=True,
            )
        probe("replay", inputs, saved["grad_output"])
        probe("replay, contiguous", tuple(t.contiguous() for t in inputs), saved["grad_output"])
    else:
        for seq in args.seq:
            torch.manual_seed(0)
            probe(
                f"seq {seq}",
                tuple(torch.randn(seq, 1, n, 128, device="cuda", dtype=torch.bfloat16) for n in (32, 8, 8)),
            )
