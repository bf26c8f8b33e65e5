"""qwen-acceptance: prove that a cluster pretrains Qwen with NeMo as well as the reference.

The package in layers, each importing only those above it in this list:

- ``errors`` (the one error type), ``yamlio``, ``models`` (the model matrix, ``models.yaml``);
- ``data`` (preprocessing) and ``judge`` (a log to a verdict: parse, metrics, curves, conformance, baselines);
- ``perf`` (FLOPs, MFU, memory model) and ``run`` (recipes, launch, monitor, the per-rank entry);
- ``sensitivity`` (the fault matrix), ``cli`` (``qwen-acceptance``) and ``plugin`` (pytest).
"""

__version__ = "0.1.0"
