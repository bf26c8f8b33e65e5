"""Running a model's training: from the matrix entry to a monitored torchrun and its log.

- ``options``: the run's command-line/pytest options and the spec they ask for (reference-fixed values guarded);
- ``recipes``: the matrix entry -> NeMo's own recipe, overrides typed against it, the no-TE changes;
- ``reference``: the reference configuration NeMo's recipe gives each entry (``--write`` regenerates it);
- ``topology``: nodes, ranks and master from the launch variables or Slurm; the GPUs here;
- ``plan``: ``prepare`` (data, folder, exact command), ``execute``, ``describe`` (the dry run);
- ``monitor``: ``Monitor`` (``feed(line)``, ``check(now)``: NaN, hang, limits, fail-fast) and ``supervise``;
- ``acquire``: a model's run for judging: recorded, live, or ``Unavailable`` with the reason;
- ``train``: the per-rank entry (``python -m qwen_acceptance.train``) and its runtime workarounds;
- ``attention``: PyTorch SDPA as Megatron core attention where Transformer Engine is absent (needs torch).
"""

__all__ = ["acquire", "attention", "monitor", "options", "plan", "recipes", "reference", "topology", "train"]
