"""Shared by the CPU and GPU attention tests: a one-process Megatron parallel state and a small config."""

import socket

import torch
from megatron.core import parallel_state
from megatron.core.transformer.transformer_config import TransformerConfig


def init_parallel_state(backend: str) -> None:
    if not torch.distributed.is_initialized():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(1, 1)


def config(heads: int = 8, groups: int = 2, head_dim: int = 32, **extra) -> TransformerConfig:
    return TransformerConfig(
        num_layers=1,
        hidden_size=heads * head_dim,
        num_attention_heads=heads,
        num_query_groups=groups,
        kv_channels=head_dim,
        attention_dropout=0.0,
        masked_softmax_fusion=False,
        **extra,
    )
