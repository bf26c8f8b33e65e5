"""Model FLOPs per trained token and MFU, for the throughput probe.

Per token and layer, forward (h hidden, a = heads·head_dim, g = query_groups·head_dim, f FFN width, s sequence):
  QKV projection 2·h·(a + 2g); attention scores and context, causal (half of the s×s products) 2·s·a;
  output projection 2·a·h; SwiGLU MLP 3 matrices 2·3·h·f, or for MoE the router 2·h·E plus top-k experts
  k·2·3·h·f_expert. Plus the logits 2·h·V once. Training = 3 × forward (backward is twice the forward);
  recomputation is not counted (model FLOPs, not hardware FLOPs). MFU = tokens/s/GPU × FLOPs/token ÷ the GPU's
  dense bf16 peak (measured, gpus.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from qwen_acceptance import yamlio
from qwen_acceptance.errors import AcceptanceError


@dataclass(frozen=True)
class Dims:
    layers: int
    hidden: int
    heads: int
    groups: int
    head_dim: int
    ffn: int
    vocab: int
    seq: int
    experts: int = 0
    topk: int = 0
    expert_ffn: int = 0

    @classmethod
    def from_config(cls, config: Any, seq: int) -> Dims:
        """From a NeMo GPT config (built or as fiddle config)."""
        experts = getattr(config, "num_moe_experts", None) or 0
        return cls(
            layers=config.num_layers,
            hidden=config.hidden_size,
            heads=config.num_attention_heads,
            groups=config.num_query_groups or config.num_attention_heads,
            head_dim=config.kv_channels or config.hidden_size // config.num_attention_heads,
            ffn=config.ffn_hidden_size,
            vocab=config.vocab_size,
            seq=seq,
            experts=experts,
            topk=getattr(config, "moe_router_topk", 0) if experts else 0,
            expert_ffn=(getattr(config, "moe_ffn_hidden_size", None) or config.ffn_hidden_size) if experts else 0,
        )


def training_flops_per_token(d: Dims) -> float:
    a, g, h = d.heads * d.head_dim, d.groups * d.head_dim, d.hidden
    attention = 2 * h * (a + 2 * g) + 2 * d.seq * a + 2 * a * h
    mlp = (2 * h * d.experts + d.topk * 6 * h * d.expert_ffn) if d.experts else 6 * h * d.ffn
    forward = d.layers * (attention + mlp) + 2 * h * d.vocab
    return 3.0 * forward


def gpu_table(path: Path | None = None) -> dict[str, Any]:
    """gpus.yaml: measured facts per GPU model (name as ``torch.cuda.get_device_name`` gives it)."""
    return yamlio.load(path or Path(str(resources.files(__package__).joinpath("gpus.yaml")))) or {}


def peak_tflops(gpu_name: str | None, path: Path | None = None) -> float | None:
    """The measured dense bf16 peak of this GPU model (gpus.yaml), or None when it has not been measured."""
    table = gpu_table(path)
    if not gpu_name:
        return None
    entry = table.get(gpu_name)
    if entry is None:
        return None
    return gpu_fact(gpu_name, entry, "bf16_dense_tflops", required=True)


def gpu_fact(gpu_name: str, entry: Any, field: str, *, required: bool) -> float | None:
    """One positive number of a gpus.yaml entry; a wrong one is an error naming the GPU and field."""
    value = entry.get(field) if isinstance(entry, dict) else None
    if value is None and not required and isinstance(entry, dict):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise AcceptanceError(f"gpus.yaml: {gpu_name}: {field} must be a positive number")
    return float(value)


def mfu(tokens_per_sec_per_gpu: float, flops_per_token: float, peak: float) -> float:
    return tokens_per_sec_per_gpu * flops_per_token / (peak * 1e12)
