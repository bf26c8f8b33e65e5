"""What the suite's checks catch (``qwen-acceptance sensitivity``).

- ``faults``: the catalogue (``faults.yaml``) of honest and broken variants of a smoke model's run;
- ``table``: train each variant through the launcher (or read its recorded log), judge it with the suite's checks,
  tabulate detection, and name the verdicts a recorded table no longer gets.
"""

__all__ = ["faults", "table"]
