"""Stand-alone reproduction (PyTorch + Megatron-Core 0.14, no NeMo) of the race behind the first-step NaN: DDP
built on an unordered CUDA side stream, as NeMo 2.5.3's ``MegatronParallel.init_model_parallel`` does
(``with torch.cuda.stream(torch.cuda.Stream()): self.init_ddp()``).

Megatron-Core's ``_ParamAndGradBuffer`` copies each parameter into its contiguous buffer on the current (side)
stream and frees the old storage at once. Two ways that goes wrong, each made deterministic here by keeping one
stream busy with ``torch.cuda._sleep``:

  unwritten  the default stream has not yet written a parameter (here: the bf16 conversion that Float16Module
             makes just before DDP) when the side stream copies it: the buffer gets the old memory's content;
  reused     the side stream has not yet copied a parameter when the default stream is handed its freed block
             and writes into it (here: int32 token ids, as the first batch's copy to the GPU does): the buffer
             gets the token ids' bits.

``--fixed`` orders the streams as ``qwen_acceptance.run.train.order_ddp_init`` does (the side stream waits for the
default one before, the default stream for the side one after). Each trial prints how many parameters differ
from what they were before DDP; exit 1 when any did.

Usage: torchrun --nproc-per-node 1 benchmarks/ddp_stream_race_repro.py [--fixed] [--trials 5]
Versions seen failing: torch 2.11.0+cu130, megatron-core 0.14.0 (H200).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import torch

NORMS, WIDTH = 16, 128  # like Qwen3's q/k layernorm weights: 128 elements
SLEEP_CYCLES = 2_000_000_000  # about a second of one busy stream


def _model() -> torch.nn.Module:
    """Norm weights made on the CPU in fp32 and moved to the GPU, as Megatron's torch norms are."""
    model = torch.nn.Sequential(*(torch.nn.RMSNorm(WIDTH) for _ in range(NORMS)), torch.nn.Linear(WIDTH, WIDTH))
    return model.cuda()


@contextlib.contextmanager
def side_stream(fixed: bool) -> Iterator[torch.cuda.Stream]:
    """NeMo's ``with torch.cuda.stream(torch.cuda.Stream())``, ordered with the default stream when ``fixed``."""
    default, side = torch.cuda.current_stream(), torch.cuda.Stream()
    if fixed:
        side.wait_stream(default)
    with torch.cuda.stream(side):
        yield side
    if fixed:
        default.wait_stream(side)


def _ddp(model: torch.nn.Module) -> torch.nn.Module:
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.transformer import TransformerConfig

    config = TransformerConfig(
        num_layers=1, hidden_size=WIDTH, num_attention_heads=1, bf16=True, params_dtype=torch.bfloat16
    )
    ddp_config = DistributedDataParallelConfig(use_distributed_optimizer=True, grad_reduce_in_fp32=True)
    return DistributedDataParallel(config, ddp_config, model)


def _changed(model: torch.nn.Module, expected: list[torch.Tensor]) -> int:
    torch.cuda.synchronize()
    return sum(not torch.equal(p.detach(), e) for p, e in zip(model.parameters(), expected, strict=True))


def trial_unwritten(fixed: bool) -> int:
    model = _model()
    expected = [p.detach().to(torch.bfloat16) for p in model.parameters()]
    torch.cuda.synchronize()
    torch.cuda._sleep(SLEEP_CYCLES)  # the default stream is busy ...
    model.bfloat16()  # ... so this conversion is queued behind it, as Float16Module's is behind earlier work
    with side_stream(fixed):
        ddp = _ddp(model)
    return _changed(ddp.module, expected)


def trial_reused(fixed: bool) -> int:
    model = _model().bfloat16()
    expected = [p.detach().clone() for p in model.parameters()]
    torch.cuda.synchronize()
    with side_stream(fixed):
        torch.cuda._sleep(SLEEP_CYCLES)  # the side stream is busy (in a real run: zeroing GiBs of buffers) ...
        ddp = _ddp(model)  # ... so the copies are queued behind it, and the old storage is already freed
    # The default stream is handed the freed blocks: a batch of int32 token ids lands in them.
    tokens = [torch.full((WIDTH // 2,), 29833, dtype=torch.int32, device="cuda") for _ in range(4 * NORMS)]
    changed = _changed(ddp.module, expected)
    del tokens
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", action="store_true", help="order the side stream with the default stream")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    from megatron.core import parallel_state

    torch.distributed.init_process_group("nccl")
    torch.cuda.set_device(0)
    parallel_state.initialize_model_parallel()
    import megatron.core

    print(
        f"torch {torch.__version__}, megatron-core {megatron.core.__version__}, {torch.cuda.get_device_name()}; "
        f"{'fixed' if args.fixed else 'as NeMo 2.5.3 does it'}",
        flush=True,
    )
    total = 0
    for trial in range(args.trials):
        for name, run in (("unwritten", trial_unwritten), ("reused", trial_reused)):
            changed = run(args.fixed)
            total += changed
            print(f"trial {trial} {name:9s}: {changed} of {NORMS + 2} parameters differ after DDP", flush=True)
    torch.distributed.destroy_process_group()
    raise SystemExit(1 if total else 0)


if __name__ == "__main__":
    main()
