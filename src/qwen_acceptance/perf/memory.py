"""Peak GPU memory per rank from first principles: for layouts that cannot be tried here (the 72B models on 32 GPUs).

Per parameter, Megatron's distributed optimizer in bf16 with the recipes' fp32 gradient reduction keeps
2 bytes (bf16 weight) + 4 (fp32 gradient buffer) on every rank of its model-parallel shard, and 12 (fp32 master
weight, Adam's two moments) sharded over the data-parallel ranks. PyTorch's Adam (no Apex here) adds an fp32
temporary of the optimizer shard's size during the step (4 bytes per shard parameter).

Activations saved for the backward pass, per token and layer, in bf16 (2 bytes per element), for this suite's
non-TE layer (SDPA attention: no s×s scores are kept):
  4h  (the two RMSNorm inputs, the QKV input, the residual)  ·  a + 2g  (Q, K, V)  ·  2(a + g)  (q/k-norm inputs and
  the rotated q, k)  ·  2a  (attention output, projection input)  ·  3f  (SwiGLU's gate and up outputs and its
  product), with a = heads·head_dim, g = query_groups·head_dim. Sequence parallelism divides all of it by TP;
  without it the 4h part stays whole. Full recomputation keeps only each layer's input (2h) and one layer's set.
The logits: bf16 [tokens, vocab/TP] and their fp32 copy for the cross entropy, 6 bytes per element, on the last
pipeline stage. 1F1B pipelining keeps min(PP, microbatches) microbatches' activations on the first stage.
Peak = weights and gradients + the larger of (activations + logits) and (the optimizer step's temporary).

Checked against the peaks (``max_memory_allocated``) of real runs on 1× and 2× H200 (BENCHMARKS.md): the model
is 0–5% below every one. A run also needs what the caching allocator reserves beyond its allocated peak: the one
that ran out of memory had 9.6 GiB reserved but unallocated. ``fits`` therefore asks for 15% headroom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.models import ModelSpec
from qwen_acceptance.perf import flops
from qwen_acceptance.perf.flops import Dims

GIB = 2**30
HEADROOM = 0.15  # the model's shortfall (up to 5%) plus allocator reserve (about 7% of an H200 in the OOM seen)


@dataclass(frozen=True)
class Parallel:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    sp: bool = False
    micro_batch: int = 1
    microbatches: int = 1  # per step on each data-parallel rank: global batch / (micro batch · dp)
    recompute: bool = False


@dataclass(frozen=True)
class Estimate:
    params_per_rank: float
    static_gib: float  # weights, gradient buffer, optimizer shard
    activations_gib: float
    logits_gib: float
    optimizer_step_gib: float
    peak_gib: float


def parameters(d: Dims, tied_embeddings: bool = False) -> tuple[float, float]:
    """(per layer, embeddings and output layer) parameter counts; norms and biases are under 0.1% and left out."""
    a, g, h = d.heads * d.head_dim, d.groups * d.head_dim, d.hidden
    mlp = (h * d.experts + d.experts * 3 * h * d.expert_ffn) if d.experts else 3 * h * d.ffn
    per_layer = h * (a + 2 * g) + a * h + mlp
    embeddings = (1 if tied_embeddings else 2) * d.vocab * h
    return per_layer, embeddings


def activation_bytes_per_token_layer(d: Dims, p: Parallel) -> float:
    a, g, h = d.heads * d.head_dim, d.groups * d.head_dim, d.hidden
    ffn = d.topk * d.expert_ffn if d.experts else d.ffn
    split = (a + 2 * g) + 2 * (a + g) + 2 * a + 3 * ffn
    whole = 4 * h
    return 2.0 * ((whole + split) / p.tp if p.sp else whole + split / p.tp)


def _stage(d: Dims, p: Parallel, embedding_matrices: int, in_flight: int, with_logits: bool) -> Estimate:
    per_layer, _ = parameters(d)
    layers_here = d.layers / p.pp
    params = (per_layer * layers_here + embedding_matrices * d.vocab * d.hidden) / p.tp
    static = params * (2 + 4 + 12 / p.dp)
    tokens = d.seq * p.micro_batch
    per_token_layer = activation_bytes_per_token_layer(d, p)
    if p.recompute:
        kept = 2.0 * d.hidden / (p.tp if p.sp else 1)
        act = tokens * layers_here * in_flight * kept + tokens * per_token_layer
    else:
        act = tokens * layers_here * in_flight * per_token_layer
    logits = 6.0 * tokens * d.vocab / p.tp if with_logits else 0.0
    step = 4.0 * params / p.dp
    peak = static + max(act + logits, step)
    return Estimate(params, static / GIB, act / GIB, logits / GIB, step / GIB, peak / GIB)


def estimate(d: Dims, p: Parallel, *, tied_embeddings: bool = False) -> Estimate:
    """The peak of the busiest rank: with one pipeline stage everything is on it; with several, the first stage
    (input embedding, min(PP, microbatches) microbatches in flight) or the last (output layer, logits, one)."""
    if p.pp == 1:
        return _stage(d, p, 1 if tied_embeddings else 2, 1, True)
    first = _stage(d, p, 1, min(p.pp, p.microbatches), False)
    last = _stage(d, p, 1, 1, True)  # a tied output layer is a copy of the embedding on the last stage
    return max(first, last, key=lambda e: e.peak_gib)


def fits(estimate: Estimate, capacity_gib: float, headroom: float = HEADROOM) -> bool:
    """Whether a layout is expected to run on a GPU with ``capacity_gib`` (what ``torch.cuda`` reports as total)."""
    return estimate.peak_gib * (1 + headroom) <= capacity_gib


def parallel_for(spec: ModelSpec, recompute: bool = False) -> Parallel:
    """The model's layout and batch as the memory model sees them; it has no terms for context or expert parallelism."""
    lay = spec.layout
    if lay.cp > 1 or lay.ep > 1:
        raise AcceptanceError(
            f"{spec.name}: the memory model covers TP, PP, DP, SP and full recompute, not context "
            f"or expert parallelism (layout {lay.describe()})"
        )
    dp = spec.data_parallel
    return Parallel(
        tp=lay.tp,
        pp=lay.pp,
        dp=dp,
        sp=lay.sp,
        micro_batch=spec.micro_batch_size,
        microbatches=spec.global_batch_size // (spec.micro_batch_size * dp),
        recompute=recompute,
    )


def for_recipe(spec: ModelSpec, model_config: Any) -> tuple[Dims, Parallel]:
    """Dims and layout from the NeMo recipe's model config (so overrides count); full recompute when the recipe
    asks for it (selective recompute saves nothing here: SDPA keeps no attention scores)."""
    recompute = getattr(model_config, "recompute_granularity", None) == "full"
    if recompute and getattr(model_config, "recompute_method", None) != "uniform":
        raise AcceptanceError(
            f"{spec.name}: full recompute needs model.config.recompute_method=uniform and "
            "model.config.recompute_num_layers=1 as well (Megatron-Core asks for a method and a count; the memory "
            "model knows uniform recompute of every layer, not 'block' or partial recompute)"
        )
    dims = flops.Dims.from_config(model_config, spec.seq_length)
    for name, value in vars(dims).items():
        if name not in {"experts", "topk", "expert_ffn"} and not (isinstance(value, int) and value > 0):
            raise AcceptanceError(
                f"{spec.name}: the model's {name} is {value!r}: the memory model needs a positive "
                "integer (check --override)"
            )
    return dims, parallel_for(spec, recompute)


def capacities(path: Path | None = None) -> dict[str, float]:
    """GPU memory as PyTorch reports it (GiB), for the GPUs gpus.yaml lists with ``memory_gib``."""
    found = {
        name: flops.gpu_fact(name, entry, "memory_gib", required=False) for name, entry in flops.gpu_table(path).items()
    }
    return {name: gib for name, gib in found.items() if gib is not None}
