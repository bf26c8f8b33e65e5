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
    one = bench("--megabytes", 0.3, "--workers", 1, "--paths", "ours", "--json", tmp_path / "one.json")
    two = bench("--megabytes", 0.3, "--workers", 2, "--paths", "ours", "--json", tmp_path / "two.json")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    (line,) = [line for line in two.stdout.splitlines() if line.startswith("| ours | 2 | ")]
    cells = line.split(" | ")
    assert float(cells[4]) > 0 and cells[6] == "—"  # a start-up measured; no efficiency: no 1-worker point here
    # (at 0.3 MB the steady phase is lost in the start-up's noise; test_derive_* checks the arithmetic)
    merged = bench("--merge", tmp_path / "one.json", tmp_path / "two.json")
    assert merged.returncode == 0, merged.stderr
    lines = [line for line in merged.stdout.splitlines() if line.startswith("| ours |")]
    assert len(lines) == 2
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


def _derive(points):
    sys.path.insert(0, str(BENCH.parent))
    try:
        import preprocess_bench
    finally:
        sys.path.pop(0)
    lines = preprocess_bench.derive(points, 100.0)
    return [line.split(" | ") for line in lines]


def _point(workers, seconds, startup, cpu=None, startup_cpu=2.0, sha="a"):
    return {
        "path": "ours",
        "workers": workers,
        "seconds": seconds,
        "startup_seconds": startup,
        "parent_cpu_seconds": cpu if cpu is not None else startup_cpu + 1.0,
        "startup_parent_cpu_seconds": startup_cpu,
        "parent_busy": 0.5,
        "tokens": 10_000_000,
        "sha256": sha,
        "peak_rss_gib": 1.0,
    }


def test_derive_reads_the_steady_rate_efficiency_and_parent_share_after_the_start_up():
    """10 M tokens: 1 worker 20 s less a 10 s start-up (1 M/s steady), 4 workers 12.5 s less 10 (4 M/s: 100%
    efficient, though the whole run is only 1.6x faster); the parent's 1 s of CPU over the 2.5 s steady phase is
    40%, so it alone would cap the rate at 10 M/s. A point whose start-up swallows the run has no steady rate."""
    one, four, lost = _derive([_point(1, 20.0, 10.0), _point(4, 12.5, 10.0), _point(8, 9.0, 10.0, sha="b")])
    assert one[4:7] == ["10.0", "1,000,000", "100%"] and one[2] == "500,000"
    assert four[4:10] == ["10.0", "4,000,000", "100%", "40%", "10,000,000", "1.00"]
    assert lost[5:7] == ["—", "—"] and lost[-1] == "NO |"
