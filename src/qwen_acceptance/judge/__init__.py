"""Judging a training log: everything from its text to a verdict, with no process, GPU or NeMo.

- ``logparse``: NeMo's progress lines (and the suite's resolved/environment lines) -> ``TrainingLog``;
- ``metrics``: the reference's two numbers: ``final_loss`` and ``throughput`` (``run_throughput`` for a run);
- ``curves``: the sparse loss curve (10-step means) and its comparison with a baseline's;
- ``conformance``: is the run the reference run (``conformance.yaml``, ``reference_config.yaml``)?
- ``verdict``: the checks, one function each, returning a ``Check`` (the tests in tests/acceptance assert them);
- ``baselines``: ``baselines.yaml``, validated on load, rewritten atomically under a lock, comments kept;
- ``record``: ``--baseline-update``: which runs may become a baseline, and writing them;
- ``provenance``: where a run came from, as its log tells it;
- ``failfast``: the live run against its baseline (stop early, warn when slow);
- ``report``: the run report (plots, ``summary.md``, ``provenance.json``).
"""

__all__ = [
    "baselines",
    "conformance",
    "curves",
    "failfast",
    "logparse",
    "metrics",
    "provenance",
    "record",
    "report",
    "verdict",
]
