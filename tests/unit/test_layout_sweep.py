"""benchmarks/layout_sweep.py and its candidates (benchmarks/layouts.yaml): every candidate is a valid probe of
the matrix, the dense ones fit an H200 by the memory model, and the table reads real `bench --json` results."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from qwen_acceptance import cli
from qwen_acceptance.perf import memory
from qwen_acceptance.run import recipes
from qwen_acceptance.run.options import spec_from_args

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("layout_sweep", ROOT / "benchmarks/layout_sweep.py")
layout_sweep = sys.modules["layout_sweep"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
spec.loader.exec_module(layout_sweep)

SWEEP_BATCH = 32  # the global batch the YAML's memory notes assume
H200_GIB = memory.capacities()["NVIDIA H200"]
ALL = [c for gpus in (2, 4, 8) for c in layout_sweep.candidates(gpus)]


def probe_spec(c):
    """The spec the sweep's own `bench` command line gives, read by the real CLI parser (raises on a layout the
    reference's rules refuse)."""
    args = cli.build_parser().parse_args(c.command(30, SWEEP_BATCH, [])[3:])
    args.probe = True  # as cmd_bench sets it
    return spec_from_args(args.model, args)


@pytest.mark.parametrize("c", ALL, ids=lambda c: c.stem)
def test_candidate_is_a_valid_probe(c):
    probe_spec(c)
    assert "=" not in c.stem and "," not in c.stem


@pytest.mark.slow
@pytest.mark.parametrize("c", [c for c in ALL if c.model != "qwen3_30b_a3b"], ids=lambda c: c.stem)
def test_dense_candidate_fits_an_h200(c, tmp_path):
    s = probe_spec(c)
    recipe = recipes.build(s, recipes.RunPaths(tmp_path, tmp_path, tmp_path), te=False, attention="sdpa")
    dims, parallel = memory.for_recipe(s, recipe.model.config)
    assert memory.fits(memory.estimate(dims, parallel), H200_GIB)


def test_table_reads_recorded_results_and_failures():
    results = [json.loads(line) for line in (ROOT / "fixtures/bench/qwen3_8b-12layers-2gpu-h200.jsonl").open()]
    tp2 = layout_sweep.Candidate("qwen3_8b", 2, "recipe", "tp=2")
    tp1 = layout_sweep.Candidate("qwen3_8b", 2, "tp1-dp2", "tp=1")
    oom = layout_sweep.Candidate("qwen3_8b", 2, "tp1-mb2", "tp=1", micro_batch_size=2)
    rows = [
        (c, c.command(8, 8, []), r)
        for c, r in ((tp2, results[0]), (tp1, results[1]), (oom, {"error": "qwen-acceptance: qwen3_8b: out of memory"}))
    ]
    text = layout_sweep.table(rows)
    assert "| qwen3_8b | 2 | tp1-dp2 | TP1 PP1 CP1 | 8 (1) | 23,050 | 59.1% | 64.1 | 1.08× |" in text
    assert "| qwen3_8b | 2 | recipe | TP2 PP1 CP1 | 8 (1) | 21,330 | 54.7% | 43.7 | 1.00× |" in text
    assert "out of memory" in text and "--micro-batch-size 2" in text


def test_dry_run_lists_one_bench_command_per_candidate(capsys):
    assert (
        layout_sweep.main(
            [
                "--gpus",
                "8",
                "--out",
                "unused",
                "--models",
                "qwen3_8b",
                "--steps",
                "30",
                "--global-batch-size",
                "32",
                "--dry-run",
                "--",
                "--tokenizer",
                "bundled:qwen3",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(layout_sweep.candidates(8, ["qwen3_8b"])) == 4
    assert all(
        " bench qwen3_8b --json --gpus 8 --steps 30 " in line
        and line.endswith("--tokenizer bundled:qwen3 --time-limit 540.0")
        for line in lines
    )
