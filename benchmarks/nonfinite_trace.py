"""Where does a run first go non-finite? Runs the suite's training entry with a hook on every module.

Every module's forward output and the gradient that flows back into it, and every parameter's gradient, are
checked as they appear; one line per tensor is printed for the first ``--trace-calls`` module calls (class,
Megatron layer number, shape, dtype, max |x|), and the first non-finite forward output, output gradient and
parameter gradient are named. Megatron's own check only says "NaN in the grad norm of bucket N"; this says which
module made it, or, when every computed gradient is finite, that the gradient buffer itself went bad.
``--dump-attention FILE`` saves the first core-attention call's inputs and output gradient, for
``benchmarks/attention_probe.py --replay FILE``; ``--sdpa-backend`` allows one SDPA backend only.

Usage (one GPU; the arguments after ``--`` are ``python -m qwen_acceptance.train``'s):
    torchrun --nproc-per-node 1 benchmarks/nonfinite_trace.py [--trace-calls N] -- qwen3_8b --data-prefix ... \
        --tokenizer-dir ... --run-dir ... --gpus 1 --probe --layout tp=1 --max-steps 2 --global-batch-size 8
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable

import torch

CORE_ATTENTION = ("SDPAttention", "DotProductAttention")


def _describe(module: torch.nn.Module) -> str:
    layer = getattr(module, "layer_number", None)
    return type(module).__name__ + (f"[layer {layer}]" if layer is not None else "")


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


class Tracer:
    """Global hooks; ``first`` maps each kind (forward, grad_out, param) to where it first went non-finite."""

    def __init__(
        self,
        trace_calls: int = 0,
        dump_attention: str | None = None,
        out: Callable[[str], None] = lambda line: print(line, flush=True),
    ) -> None:
        self.trace_calls, self.dump_attention, self.out = trace_calls, dump_attention, out
        self.first: dict[str, str] = {}
        self._calls = itertools.count()
        self._dumped = False
        self._removers: list[Callable[[], None]] = []

    def check(self, kind: str, where: str, tensor: torch.Tensor, show: bool) -> None:
        if not tensor.is_floating_point() or tensor.numel() == 0:
            return
        with torch.no_grad():
            finite = bool(tensor.isfinite().all())
            peak = float(tensor.detach().abs().float().max()) if finite else float("nan")
        if show or not finite:
            self.out(
                f"[trace] {kind:9s} {where:45s} {tuple(tensor.shape)!s:28s} {str(tensor.dtype)[6:]:9s} "
                f"max|x|={peak:.4g}{'' if finite else '  NON-FINITE'}"
            )
        if not finite and kind not in self.first:
            self.first[kind] = where
            self.out(f"[trace] FIRST NON-FINITE {kind}: {where}")

    def _forward_hook(self, module: torch.nn.Module, inputs: tuple, output: object) -> None:
        call = next(self._calls)
        where, show = f"#{call} {_describe(module)}", call < self.trace_calls
        if self.dump_attention and not self._dumped and type(module).__name__ in CORE_ATTENTION:
            self._dumped = True
            self._dump_on_backward(inputs, output)
        for tensor in _tensors(output):
            self.check("forward", where, tensor, show)
            if tensor.requires_grad:
                tensor.register_hook(lambda grad, where=where, show=show: self.check("grad_out", where, grad, show))

    def _dump_on_backward(self, inputs: tuple, output: torch.Tensor) -> None:
        """Keep query, key, value (as core attention got them) and save them with the output's gradient."""
        query, key, value = (t.detach().clone() for t in inputs[:3])

        def save(grad: torch.Tensor) -> None:
            torch.save(
                {"query": query, "key": key, "value": value, "grad_output": grad.detach().clone()}, self.dump_attention
            )
            self.out(f"[trace] saved core attention inputs and output gradient to {self.dump_attention}")

        output.register_hook(save)

    def install(self) -> Callable[[], None]:
        """Hook every module's forward and every parameter created from now on; returns the undo."""
        handle = torch.nn.modules.module.register_module_forward_hook(self._forward_hook)
        original = torch.nn.Module.register_parameter

        def register_parameter(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
            original(module, name, param)
            if param is not None and param.requires_grad:
                where = f"{type(module).__name__}.{name}"
                param.register_hook(lambda grad, where=where: self.check("param", where, grad, True))

        torch.nn.Module.register_parameter = register_parameter

        def remove() -> None:
            handle.remove()
            torch.nn.Module.register_parameter = original

        return remove


def main() -> None:
    from qwen_acceptance.run import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace-calls", type=int, default=200, help="module calls to print in full")
    parser.add_argument("--dump-attention", metavar="FILE", help="save the first core attention call (torch.save)")
    parser.add_argument(
        "--sdpa-backend",
        choices=["flash", "mem_efficient", "math", "cudnn"],
        help="allow only this scaled_dot_product_attention backend",
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.sdpa_backend:
        for name in ("flash", "mem_efficient", "math", "cudnn"):
            getattr(torch.backends.cuda, f"enable_{name}_sdp")(name == args.sdpa_backend)
    Tracer(args.trace_calls, args.dump_attention).install()
    train.main([a for a in args.train_args if a != "--"] or sys.exit("no training arguments after --"))


if __name__ == "__main__":
    main()
