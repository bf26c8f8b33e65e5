"""The preprocessing sweep's mechanics on a CPU (not its speed, which BENCHMARKS.md reports from the 16-core
machine): a sweep split in parts, as the device's 10-minute limit needs, merges into one table whose efficiency
and byte-identity span the parts; a part keeps its points when cut short; too little unique text is an error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks/preprocess_bench.py"


def bench(*args):
    return subprocess.run(
        [sys.executable, "-W", "ignore", str(BENCH), *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_split_sweep_merges_into_one_table(tmp_path):
    one = bench("--megabytes", 3, "--workers", 1, "--paths", "ours", "--json", tmp_path / "one.json")
    two = bench("--megabytes", 3, "--workers", 2, "--paths", "ours", "--json", tmp_path / "two.json")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    (line,) = [line for line in two.stdout.splitlines() if line.startswith("| ours | 2 | ")]
    cells = line.split(" | ")
    assert float(cells[4]) > 0 and cells[6] == "—"  # a start-up measured; no efficiency: no 1-worker point here
    merged = bench("--merge", tmp_path / "one.json", tmp_path / "two.json")
    assert merged.returncode == 0, merged.stderr
    lines = [line for line in merged.stdout.splitlines() if line.startswith("| ours |")]
    assert len(lines) == 2 and lines[0].split(" | ")[6] == "100%" and lines[1].split(" | ")[6].endswith("%")
    assert all(line.endswith("| yes |") for line in lines)  # the same bytes from both parts

    other = json.loads((tmp_path / "two.json").read_text())
    other["corpus_sha256"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused = bench("--merge", tmp_path / "one.json", tmp_path / "other.json")
    assert refused.returncode == 1 and "the runs read different inputs" in refused.stderr
    (tmp_path / "foreign.json").write_text('{"points": []}')
    for bad in (tmp_path / "missing.json", tmp_path / "foreign.json"):
        refused = bench("--merge", tmp_path / "one.json", bad)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert f"--merge {bad}: not a --json output of this script" in refused.stderr


def test_too_little_unique_text_is_one_line(tmp_path):
    out = bench("--megabytes", 1e9, "--paths", "ours")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "of unique Python sources under" in out.stderr and "--megabytes 1e+09 asks for more" in out.stderr
