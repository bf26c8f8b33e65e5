"""On a GPU: DDP built on an unordered side stream (as NeMo 2.5.3 does) hands parameters over corrupted, and the
suite's ordering prevents it (benchmarks/ddp_stream_race_repro.py; BENCHMARKS.md, "The first-step NaN")."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REPRO = Path(__file__).resolve().parents[2] / "benchmarks" / "ddp_stream_race_repro.py"


def _repro(*args):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "1",
        str(REPRO),
        "--trials",
        "3",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_unordered_side_stream_corrupts_parameters():
    out = _repro()
    assert out.returncode != 0, out.stdout
    assert "parameters differ after DDP" in out.stdout


def test_ordered_side_stream_keeps_parameters():
    out = _repro("--fixed")
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert out.stdout.count(" 0 of 18 parameters differ") == 6
