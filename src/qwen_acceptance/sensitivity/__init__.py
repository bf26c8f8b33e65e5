"""What the suite's checks catch (``qwen-acceptance sensitivity``).

- ``faults``: the catalogue (``faults.yaml``) of honest and broken variants of a smoke model's run;
- ``table``: train each variant through the launcher (or read its recorded log), judge it with the suite's checks,
  tabulate detection, and name the verdicts a recorded table no longer gets;
- ``bisect``: the learning-rate multipliers above and below 1 from which the suite fails a run (its detection power).
"""

__all__ = ["bisect", "faults", "table"]
