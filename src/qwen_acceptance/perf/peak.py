"""Measure a GPU's dense bf16 matrix rate: ``python -m qwen_acceptance.perf.peak`` (the MFU denominator, gpus.yaml).

Random 8192×8192 operands (zeros run faster and mislead), 5 warm-ups, then the median of 20 timed products with
CUDA events.
"""

from __future__ import annotations

import json
import statistics

import torch


def measure(n: int = 8192, warmup: int = 5, repeats: int = 20) -> dict:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(warmup):
        a @ b
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    median = statistics.median(times)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "n": n,
        "median_s": median,
        "bf16_dense_tflops": 2 * n**3 / median / 1e12,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    print(json.dumps(measure()))
