"""Speed and size: what a run costs on a GPU, measured or modelled.

- ``flops``: training FLOPs per token and MFU against the GPU's measured peak (``gpus.yaml``);
- ``peak``: measure a GPU's dense bf16 peak (``python -m qwen_acceptance.perf.peak``; needs torch and a GPU);
- ``memory``: the per-GPU peak memory model for layouts that cannot be tried here;
- ``probe``: what ``qwen-acceptance bench`` reports for a probe's log.
"""

__all__ = ["flops", "memory", "peak", "probe"]
