"""What the suite's checks catch (``qwen-acceptance sensitivity``).

- ``faults``: the catalogue (``faults.yaml``) of honest and broken variants of a smoke model's run;
- ``table``: train each variant through the launcher, judge it with the suite's checks, tabulate detection.
"""

__all__ = ["faults", "table"]
