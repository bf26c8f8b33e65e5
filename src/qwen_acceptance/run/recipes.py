"""A NeMo recipe configured from the model matrix: the recipe's own factory with the reference's numbers, real
data, tokens/s logging, a fresh run directory, and the changes a stack without Transformer Engine needs.

Everything here builds NeMo-Run configuration (fiddle), nothing runs: the CPU tests check the resolved values,
and ``train`` builds and calls it on every rank.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.models import ModelSpec

# Model-config switches whose kernels come from Transformer Engine or Apex (each seen failing without them on the
# H200 machines, ../shared/device/README.md: first "No module named 'scaled_masked_softmax_cuda'").
TE_FUSIONS = (
    "masked_softmax_fusion",
    "apply_rope_fusion",
    "gradient_accumulation_fusion",
    "cross_entropy_loss_fusion",
    "bias_activation_fusion",
)
# MoE paths that need TE: the grouped GEMM and the fused token permutation.
TE_MOE = ("moe_grouped_gemm", "moe_permute_fusion")


TE_CHOICES = ("auto", "on", "off")
ATTENTION_CHOICES = ("auto", "sdpa", "local", "te")


def transformer_engine_available() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


def resolve_te(choice: str) -> bool:
    """--te: auto uses Transformer Engine when it imports."""
    return transformer_engine_available() if choice == "auto" else choice == "on"


@dataclass(frozen=True)
class RunPaths:
    data_prefix: Path  # PREFIX of PREFIX.bin/.idx
    tokenizer_dir: Path
    run_dir: Path


def _recipe_module(name: str) -> Any:
    from nemo.collections import llm

    module = getattr(llm, name, None)
    if module is None or not hasattr(module, "pretrain_recipe"):
        raise AcceptanceError(f"NeMo has no recipe 'llm.{name}.pretrain_recipe' (models.yaml field 'recipe')")
    return module


def _factory_kwargs(spec: ModelSpec, factory: Any, run_dir: Path, nodes: int) -> dict[str, Any]:
    """The recipe factory's own arguments, so the recipe wires them where it means to."""
    lay = spec.layout
    if spec.gpus % nodes:
        raise AcceptanceError(f"{spec.name}: {spec.gpus} GPUs do not split evenly over {nodes} nodes")
    wanted = {
        "dir": str(run_dir),
        "name": spec.name,
        "tensor_parallelism": lay.tp,
        "pipeline_parallelism": lay.pp,
        "virtual_pipeline_parallelism": lay.vp,
        "context_parallelism": lay.cp,
        "sequence_parallelism": lay.sp,
        "expert_parallelism": lay.ep,
        "num_nodes": nodes,
        "num_gpus_per_node": spec.gpus // nodes,
        "max_steps": spec.max_steps,
        "global_batch_size": spec.global_batch_size,
        "micro_batch_size": spec.micro_batch_size,
        "seq_length": spec.seq_length,
        "warmup_steps": spec.lr.warmup_steps,
        "min_lr": spec.lr.min,
        "max_lr": spec.lr.max,
    }
    accepted = inspect.signature(factory).parameters
    if lay.ep > 1 and "expert_parallelism" not in accepted:
        raise AcceptanceError(f"{spec.name}: recipe '{spec.recipe}' has no expert parallelism (layout.ep={lay.ep})")
    return {k: v for k, v in wanted.items() if k in accepted}


def _node_and_leaf(root: Any, dotted: str, where: str) -> tuple[Any, str, Any]:
    """The config node that holds ``dotted``'s last part, that part, and its current value."""
    *parents, leaf = dotted.split(".")
    node = root
    for part in parents:
        node = getattr(node, part, None)
        if node is None:
            raise AcceptanceError(f"{where}: override '{dotted}': the recipe has no '{part}'")
    try:
        current = getattr(node, leaf)
    except AttributeError:
        raise AcceptanceError(f"{where}: override '{dotted}': the recipe has no '{leaf}'") from None
    return node, leaf, current


def typed_value(dotted: str, value: Any, current: Any, where: str) -> Any:
    """``value`` as the type of the value it replaces: ``9e-4`` (a string to YAML 1.1) reaches a float field as a
    float; ``abc``, an empty value or ``1e3`` never reach an integer field. A field that is None takes any value."""

    def bad(expected: str) -> AcceptanceError:
        return AcceptanceError(
            f"{where}: override '{dotted}={'' if value is None else value}': expected "
            f"{expected} (the recipe has {current!r})"
        )

    if current is None:
        return value
    if value is None or value == "":
        raise bad("a value")
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(current, float):
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    if isinstance(current, str):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad("a string")
        return str(value)
    if type(current).__name__ == "dtype" and type(current).__module__ == "torch":
        import torch

        dtype = getattr(torch, str(value), None)
        if not isinstance(dtype, torch.dtype):
            raise bad("a torch dtype name, e.g. bfloat16")
        return dtype
    if type(value) is not type(current):
        raise bad(f"a {type(current).__name__}, which cannot be set from the command line")
    return value


def apply_override(root: Any, dotted: str, value: Any, where: str) -> None:
    """Set one recipe value, checked against the path and the type of what it replaces."""
    node, leaf, current = _node_and_leaf(root, dotted, where)
    setattr(node, leaf, typed_value(dotted, value, current, where))


def resolve_attention(choice: str, te: bool) -> str:
    """auto: the recipe's own (TE) attention where TE is there, else SDPA (local attention's seq² memory does not
    fit at seq 8192)."""
    if choice not in ATTENTION_CHOICES:
        raise AcceptanceError(f"unknown attention {choice!r}: choose auto, sdpa, local or te")
    if choice == "te" and not te:
        raise AcceptanceError("attention 'te' needs Transformer Engine, which is not in use")
    if choice == "auto":
        return "te" if te else "sdpa"
    return choice


def build(spec: ModelSpec, paths: RunPaths, *, nodes: int = 1, te: bool | None = None, attention: str = "auto") -> Any:
    """The recipe for ``spec`` on ``nodes`` nodes as NeMo-Run config; ``te`` defaults to whether Transformer Engine
    is importable; ``attention`` as ``resolve_attention`` says."""
    import nemo_run as run
    from nemo.collections.common.tokenizers.huggingface.auto_tokenizer import AutoTokenizer
    from nemo.collections.llm.gpt.data.pre_training import PreTrainingDataModule
    from nemo.utils.exp_manager import TimingCallback

    te = transformer_engine_available() if te is None else te
    factory = _recipe_module(spec.recipe).pretrain_recipe
    recipe = factory(**_factory_kwargs(spec, factory, paths.run_dir, nodes))

    strategy = recipe.trainer.strategy
    strategy.expert_tensor_parallel_size = spec.layout.etp if spec.layout.ep > 1 else None
    recipe.model.config.seq_length = spec.seq_length
    # Real data and the reference's seed for its sampling. The sample indices are built in memory on each rank
    # (no index_mapping_dir): nothing is written beside the dataset, and multi-node runs need no shared cache.
    recipe.data = run.Config(
        PreTrainingDataModule,
        paths=[str(paths.data_prefix)],
        seq_length=spec.seq_length,
        global_batch_size=spec.global_batch_size,
        micro_batch_size=spec.micro_batch_size,
        tokenizer=run.Config(AutoTokenizer, pretrained_model_name=str(paths.tokenizer_dir)),
        seed=spec.seed,
        num_workers=2,
    )
    # tokens_per_sec_per_gpu in every progress line: the reference's throughput field.
    timing = [cb for cb in recipe.trainer.callbacks if getattr(cb, "__fn_or_cls__", None) is TimingCallback]
    if timing:
        timing[0].log_tokens_per_sec = True
    else:
        recipe.trainer.callbacks.append(run.Config(TimingCallback, log_tokens_per_sec=True))
    # A fresh run: no checkpoints written, none resumed from.
    recipe.log.ckpt = None
    recipe.trainer.enable_checkpointing = False
    recipe.resume = None
    if not te:
        without_transformer_engine(recipe)
    if resolve_attention(attention, te) == "sdpa":
        from qwen_acceptance.run.attention import sdpa_layer_spec

        recipe.model.config.transformer_layer_spec = sdpa_layer_spec
    for dotted, value in spec.overrides.items():
        apply_override(recipe, dotted, value, f"{spec.name}.overrides")
    return recipe


def for_reading(spec: ModelSpec) -> Any:
    """The recipe NeMo builds for ``spec`` with placeholder paths and no TE: for reading its values (the reference
    configuration, the memory model, override checks); no run uses it."""
    unused = Path("unused")
    return build(spec, RunPaths(unused, unused, unused), te=False, attention="sdpa")


def check_overrides(spec: ModelSpec) -> None:
    """Build the recipe here, once, so a bad ``--override`` (unknown path, wrong type) fails before any process
    starts. Where NeMo is not importable here the training entry checks them instead, at its start."""
    try:
        for_reading(spec)
    except ImportError:
        return


def without_transformer_engine(recipe: Any) -> None:
    """The config changes NeMo 2.5 / Megatron-Core 0.14 need when TE is absent (the runtime one is in ``train``)."""
    config = recipe.model.config
    for name in TE_FUSIONS:
        setattr(config, name, False)
    if getattr(config, "num_moe_experts", None):
        for name in TE_MOE:
            setattr(config, name, False)


SHAPE = (
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "num_query_groups",
    "kv_channels",
    "ffn_hidden_size",
    "vocab_size",
    "seq_length",
    "num_moe_experts",
    "moe_router_topk",
    "moe_ffn_hidden_size",
    "normalization",
    "qk_layernorm",
    "add_qkv_bias",
    "add_bias_linear",
    "gated_linear_unit",
    "activation_func",
    "init_method_std",
    "rotary_base",
    "position_embedding_type",
    "share_embeddings_and_output_weights",
    "layernorm_epsilon",
    "hidden_dropout",
    "attention_dropout",
    "make_vocab_size_divisible_by",
    "moe_aux_loss_coeff",
    "moe_router_load_balancing_type",
    "recompute_granularity",
)
OPTIM = (
    "optimizer",
    "lr",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_eps",
    "clip_grad",
    "bf16",
    "fp16",
    "use_distributed_optimizer",
)


def _plain(value: Any) -> Any:
    """A value as JSON can print it the same on every run (a function by name, a dtype by str)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return getattr(value, "__name__", None) or str(value)


def resolved(recipe: Any) -> dict[str, Any]:
    """The values a reader checks, pulled out of the built config: printed at start, tested on CPU, and compared
    with the reference's by ``conformance``."""
    trainer, strategy, data, config = recipe.trainer, recipe.trainer.strategy, recipe.data, recipe.model.config
    optim = recipe.optim.config
    plugins = trainer.plugins if not isinstance(trainer.plugins, list) else (trainer.plugins or [None])[0]
    ddp = getattr(strategy, "ddp", None)
    return {
        "model_config": config.__fn_or_cls__.__name__,
        "layer_spec": getattr(config.transformer_layer_spec, "__name__", str(config.transformer_layer_spec)),
        "shape": {f: _plain(getattr(config, f, None)) for f in SHAPE},
        "fusions": {f: getattr(config, f, None) for f in (*TE_FUSIONS, *TE_MOE)},
        "trainer": {
            "num_nodes": trainer.num_nodes,
            "devices": trainer.devices,
            "max_steps": trainer.max_steps,
            "val_check_interval": trainer.val_check_interval,
            "limit_val_batches": trainer.limit_val_batches,
        },
        "parallel": {
            "tensor": strategy.tensor_model_parallel_size,
            "pipeline": strategy.pipeline_model_parallel_size,
            "virtual_pipeline": strategy.virtual_pipeline_model_parallel_size,
            "context": strategy.context_parallel_size,
            "sequence": strategy.sequence_parallel,
            "expert": getattr(strategy, "expert_model_parallel_size", 1),
            "expert_tensor": getattr(strategy, "expert_tensor_parallel_size", None),
        },
        "data": {
            "paths": list(data.paths),
            "global_batch_size": data.global_batch_size,
            "micro_batch_size": data.micro_batch_size,
            "seq_length": data.seq_length,
            "seed": data.seed,
        },
        "optim": {
            **{f: _plain(getattr(optim, f, None)) for f in OPTIM},
            "scheduler": recipe.optim.lr_scheduler.__fn_or_cls__.__name__,
            "min_lr": recipe.optim.lr_scheduler.min_lr,
            "warmup_steps": recipe.optim.lr_scheduler.warmup_steps,
            "constant_steps": getattr(recipe.optim.lr_scheduler, "constant_steps", None),
        },
        "precision": {
            "plugin": _plain(getattr(plugins, "precision", None)),
            "params_dtype": _plain(getattr(plugins, "params_dtype", None)),
            "grad_reduce_in_fp32": getattr(plugins, "grad_reduce_in_fp32", None),
            "ddp_grad_reduce_in_fp32": getattr(ddp, "grad_reduce_in_fp32", None),
        },
        "checkpoints": recipe.log.ckpt is not None,
        "resume": recipe.resume is not None,
    }
