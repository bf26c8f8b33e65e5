"""Does NeMo's DDP construction on an unordered CUDA side stream corrupt parameters? Runs the suite's training
entry with the stream ordering of ``train.order_ddp_init`` chosen by ``--order``, and checks every small parameter
at the first forward against a copy taken on the default stream just before DDP was built.

NeMo 2.5.3 builds Megatron-Core's DDP inside ``torch.cuda.stream(torch.cuda.Stream())``; Megatron copies each
parameter into its contiguous buffer on that stream and frees the old storage. ``--order``:
  none    NeMo as shipped: the side stream is not ordered with the default stream at all
  before  the side stream waits for the default stream first (parameters are written before they are copied)
  after   the default stream waits for the side stream afterwards (freed storage is not reused before it is read)
  both    the suite's fix (``train.order_ddp_init``)
Prints ``[ddp-race] order=... changed=N/M ...`` at the first forward, naming each parameter that differs from its
pre-DDP copy (sum and max |x| before and after). The run itself then stops or trains as it would.

Usage (one GPU; the arguments after ``--`` are ``python -m qwen_acceptance.train``'s):
    torchrun --nproc-per-node 1 benchmarks/ddp_init_race.py --order none -- qwen3_8b --data-prefix ... \
        --tokenizer-dir ... --run-dir ... --gpus 1 --probe --layout tp=1 --max-steps 2 --global-batch-size 8 \
        --override model.config.num_layers=1
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

import torch

SMALL = 8192  # parameters up to this many elements are copied (the norms' weights; the big ones would cost GiBs)
ORDERS = ("none", "before", "after", "both")


def _stat(t: torch.Tensor) -> str:
    d = t.detach().double()
    return f"sum={d.sum().item():.6e} max|x|={d.abs().max().item():.4e}"


def install(order: str) -> None:
    """Replace NeMo's ``init_ddp`` with one ordered as ``order`` says that also snapshots the small parameters."""
    from nemo.lightning.megatron_parallel import MegatronParallel

    nemo_init_ddp = getattr(MegatronParallel.init_ddp, "__wrapped__", MegatronParallel.init_ddp)
    snapshot: list[tuple[str, torch.nn.Parameter, torch.Tensor]] = []

    @functools.wraps(nemo_init_ddp)
    def init_ddp(self: Any) -> Any:
        side, default = torch.cuda.current_stream(), torch.cuda.default_stream()
        with torch.cuda.stream(default):  # ordered after everything that wrote the parameters
            snapshot.extend(
                (name, p, p.detach().clone())
                for chunk in self
                for name, p in chunk.named_parameters()
                if p.numel() <= SMALL
            )
        dtypes = sorted({str(p.dtype) for chunk in self for p in chunk.parameters()})
        print(
            f"[ddp-race] order={order} side_stream={side.stream_id} default_stream={default.stream_id} "
            f"param_dtypes={dtypes}",
            flush=True,
        )
        if order in ("before", "both"):
            side.wait_stream(default)
        try:
            return nemo_init_ddp(self)
        finally:
            if order in ("after", "both"):
                default.wait_stream(side)

    def check(module: torch.nn.Module, args: Any) -> None:
        if not snapshot:  # a module called before DDP was built
            return
        handle.remove()
        torch.cuda.synchronize()
        changed = [(n, before, p) for n, p, before in snapshot if not torch.equal(p.detach(), before)]
        print(
            f"[ddp-race] order={order} changed={len(changed)}/{len(snapshot)} small parameters at the first forward",
            flush=True,
        )
        for name, before, p in changed:
            print(f"[ddp-race]   {name}: before DDP {_stat(before)}; at first forward {_stat(p)}", flush=True)

    MegatronParallel.init_ddp = init_ddp
    handle = torch.nn.modules.module.register_module_forward_pre_hook(check)


def main() -> None:
    from qwen_acceptance.run import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", choices=ORDERS, required=True)
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    order = args.order
    # The training entry installs its fix through train.order_ddp_init; put this variant in its place.
    train.order_ddp_init = lambda: install(order) or f"ddp init order: {order} (benchmarks/ddp_init_race.py)"
    train.main([a for a in args.train_args if a != "--"] or sys.exit("no training arguments after --"))


if __name__ == "__main__":
    main()
