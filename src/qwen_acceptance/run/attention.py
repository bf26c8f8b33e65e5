"""Core attention on PyTorch's ``scaled_dot_product_attention`` for stacks without Transformer Engine.

Megatron-Core's local ``DotProductAttention`` materialises the [b·heads, s, s] scores and an explicit mask: at
seq 8192 that is gigabytes per layer. SDPA's flash and memory-efficient kernels never build them. The module takes
the same constructor and forward arguments as ``DotProductAttention`` ([s, b, heads, dim] in, [s, b, heads·dim]
out), so it drops into the local layer spec's ``core_attention`` slot.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig


class SDPAttention(MegatronModule):
    """Causal, grouped-query attention through ``F.scaled_dot_product_attention``; no mask is materialised for the
    causal case (the data's attention mask is the plain causal one unless documents are reset, see ``forward``)."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        model_comm_pgs: Any = None,
    ) -> None:
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("SDPAttention does not split the sequence: use context_parallel_size 1 or TE")
        tp = (
            model_comm_pgs.tp.size()
            if model_comm_pgs is not None
            else parallel_state.get_tensor_model_parallel_world_size()
        )
        self.heads = config.num_attention_heads // tp
        self.groups = (config.num_query_groups or config.num_attention_heads) // tp
        self.head_dim = config.kv_channels
        self.attn_mask_type = attn_mask_type
        self.scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(self.head_dim)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params: Any = None,
    ) -> torch.Tensor:
        if attention_bias is not None or packed_seq_params is not None:
            raise NotImplementedError("SDPAttention: no attention bias or packed sequences (use TE)")
        sq, b = query.shape[0], query.shape[1]
        # [s, b, heads, dim] -> [b, heads, s, dim]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        if self.groups != self.heads:
            k = k.repeat_interleave(self.heads // self.groups, dim=1)
            v = v.repeat_interleave(self.heads // self.groups, dim=1)
        causal = (attn_mask_type or self.attn_mask_type) == AttnMaskType.causal
        mask = None
        if not causal and attention_mask is not None:
            mask = ~attention_mask  # Megatron: True = masked out; SDPA: True = attend
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
            scale=self.scale,
        )
        # [b, heads, s, dim] -> [s, b, heads·dim]
        return out.permute(2, 0, 1, 3).reshape(sq, b, self.heads * self.head_dim)


def sdpa_layer_spec(config: Any) -> Any:
    """NeMo's local (non-TE) layer spec with SDPAttention as the core attention."""
    from nemo.collections.llm.gpt.model.base import local_layer_spec

    spec = local_layer_spec(config)
    spec.submodules.self_attention.submodules.core_attention = SDPAttention
    return spec
