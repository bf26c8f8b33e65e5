"""The training entry that torchrun starts on every rank (``python -m qwen_acceptance.train MODEL ...``).

It builds the model's NeMo recipe from the matrix (``recipes.build``), applies the runtime workarounds a stack
without Transformer Engine needs, prints the resolved choices and the software environment once (global rank 0),
and runs NeMo's own ``llm.pretrain``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qwen_acceptance import models
from qwen_acceptance.judge.conformance import reference_changes
from qwen_acceptance.judge.logparse import CONFIG_MARKER, ENV_MARKER, PEAK_MARKER
from qwen_acceptance.run import recipes
from qwen_acceptance.run.options import add_run_arguments, spec_from_args


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def environment() -> dict[str, Any]:
    """What a baseline's provenance needs from this machine."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "gpus_visible": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
        "driver": _nvidia_driver(),
        "torch": torch.__version__,
        "nemo": _version("nemo_toolkit"),
        "megatron_core": _version("megatron-core") or _version("megatron_core"),
        "transformer_engine": _version("transformer_engine") or _version("transformer-engine"),
        # The image is not knowable from inside: users name it (e.g. nvcr.io/nvidia/nemo:25.09.00).
        "container": os.environ.get("QWEN_ACCEPTANCE_CONTAINER"),
        "python": sys.version.split()[0],
    }


def _nvidia_driver() -> str | None:
    """The kernel module's version, e.g. 580.159.04, from the first line of /proc/driver/nvidia/version."""
    try:
        first = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    found = re.search(r"\b\d{3}\.\d+(?:\.\d+)?\b", first)
    return found.group(0) if found else None


def runtime_workarounds(*, te: bool, seed: int) -> list[str]:
    """Process-wide changes made before NeMo builds anything; each says why."""
    applied = []
    if not te:
        # Megatron-Core 0.14's MoE router calls `te_general_gemm`, a name only defined when TE imports
        # (NameError in moe_utils.py); None makes it take its torch.mm path.
        from megatron.core.transformer.moe import moe_utils

        if not hasattr(moe_utils, "te_general_gemm"):
            moe_utils.te_general_gemm = None
            applied.append("megatron.core.transformer.moe.moe_utils.te_general_gemm = None")
    applied.append(order_ddp_init())
    # NeMo 2.5 seeds model initialisation with init_parallel_ranks' default (1234) and no way to pass another;
    # the matrix's seed goes in here so a run with another seed really differs.
    from nemo.lightning import _strategy_lib

    original = _strategy_lib.init_parallel_ranks

    def init_parallel_ranks(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("seed", seed)
        return original(*args, **kwargs)

    _strategy_lib.init_parallel_ranks = init_parallel_ranks
    applied.append(f"model init seed {seed} (nemo.lightning._strategy_lib.init_parallel_ranks)")
    return applied


def order_ddp_init() -> str:
    """Order NeMo's DDP construction with the default CUDA stream (the first-step NaN at full width).

    NeMo 2.5's ``MegatronParallel.init_model_parallel`` builds Megatron-Core's DDP inside
    ``torch.cuda.stream(torch.cuda.Stream())`` (for full-iteration CUDA graphs) and never orders that side stream
    with the default one. There, ``_ParamAndGradBuffer`` copies every parameter into the new contiguous buffer and
    frees the old storage: the copy may read a parameter before the default stream has written it, and the freed
    block may be handed to the default stream and overwritten before the copy has read it. Either way a parameter
    starts training with garbage (measured: ``k_layernorm.weight``, BENCHMARKS.md). Megatron-LM fixed the same
    pattern upstream (issue #2044, PRs #2652 and #2852); NeMo 2.5.3 still has it. The side stream waits for the
    default stream before, and the default stream for the side stream after: no numbers change, only the order.
    """
    import functools

    from nemo.lightning.megatron_parallel import MegatronParallel

    nemo_init_ddp = getattr(MegatronParallel.init_ddp, "__wrapped__", MegatronParallel.init_ddp)

    @functools.wraps(nemo_init_ddp)
    def init_ddp(self: Any) -> Any:
        import torch

        side, default = torch.cuda.current_stream(), torch.cuda.default_stream()
        side.wait_stream(default)
        try:
            return nemo_init_ddp(self)
        finally:
            default.wait_stream(side)

    MegatronParallel.init_ddp = init_ddp
    return (
        "DDP built in stream order with the default stream (nemo.lightning.megatron_parallel.MegatronParallel.init_ddp)"
    )


def parser() -> argparse.ArgumentParser:
    """The per-rank entry's arguments: what ``plan.command`` writes, the run is rebuilt from (nothing else)."""
    parser = argparse.ArgumentParser(prog="python -m qwen_acceptance.train", description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data-prefix", type=Path, required=True, help="PREFIX of PREFIX.bin/.idx")
    parser.add_argument("--tokenizer-dir", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument(
        "--te", choices=recipes.TE_CHOICES, default="auto", help="use Transformer Engine (auto: when it imports)"
    )
    parser.add_argument(
        "--attention",
        choices=recipes.ATTENTION_CHOICES,
        default="auto",
        help="core attention (auto: TE's with TE, else PyTorch SDPA)",
    )
    add_run_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)

    spec = spec_from_args(args.model, args)
    te = recipes.resolve_te(args.te)
    applied = runtime_workarounds(te=te, seed=spec.seed)
    recipe = recipes.build(
        spec,
        recipes.RunPaths(args.data_prefix, args.tokenizer_dir, args.run_dir),
        nodes=args.nodes,
        te=te,
        attention=args.attention,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        reference = models.get_model(args.model, args.models)
        resolved = {
            **recipes.resolved(recipe),
            "model": spec.name,
            "seed": spec.seed,
            "probe": spec.probe,
            "changes_from_reference": reference_changes(reference, spec),
            "layout": spec.layout.describe(),
            "transformer_engine": te,
            "attention": recipes.resolve_attention(args.attention, te),
            "runtime_workarounds": applied,
        }
        print(CONFIG_MARKER + json.dumps(resolved, default=str), flush=True)
        print(ENV_MARKER + json.dumps(environment(), default=str), flush=True)

    import fiddle
    import torch

    fiddle.build(recipe)()
    if torch.cuda.is_available():  # every rank: the probe reports the largest
        print(
            PEAK_MARKER
            + json.dumps(
                {
                    "rank": int(os.environ.get("RANK", "0")),
                    "max_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
                    "max_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
