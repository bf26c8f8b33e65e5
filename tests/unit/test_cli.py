"""`qwen-acceptance summarize` and `check`: output, exit codes 0/1/2 and one-line errors, as a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nemolog import write_log

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DENSE = FIXTURES / "nemo25/nemo25-h200-tiny-qwen3-dense-60steps.log"
SMOKE = FIXTURES / "logs/smoke_qwen3.log"


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "qwen_acceptance.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_summarize_json_on_real_log():
    out = cli("summarize", DENSE, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["last_step"] == 59 and data["final_loss"] == 6.52 and data["throughput_steps"] == 40
    assert data["tokens_per_sec_per_gpu"] == pytest.approx(114440.0, rel=1e-3)


def test_summarize_text():
    out = cli("summarize", DENSE)
    assert out.returncode == 0
    assert "final loss: 6.52 at global_step 59" in out.stdout
    assert "mean of steps 10..49 (40 steps, first and last 10 dropped)" in out.stdout


def test_check_pass_and_fail_exit_codes(tmp_path):
    log = write_log(tmp_path / "run.log", 1000, loss=lambda s: 3.0)
    assert cli("check", log, "--baseline-loss", "3.1").returncode == 0
    failed = cli("check", log, "--baseline-loss", "2.5", "--json")
    assert failed.returncode == 1
    verdict = json.loads(failed.stdout)
    assert not verdict["passed"] and verdict["relative_delta"] == pytest.approx(0.2)
    assert cli("check", log, "--baseline-loss", "3.1", "--tolerance", "0.01").returncode == 1


def test_check_against_model_uses_step_999_and_baselines_file(tmp_path):
    short = write_log(tmp_path / "short.log", 500, loss=lambda s: 3.0)
    full = write_log(tmp_path / "full.log", 1000, loss=lambda s: 3.0)
    base = tmp_path / "b.yaml"
    base.write_text("qwen3_8b:\n  final_loss: 3.05\n  provenance: {date: x, gpus: 8, log_sha256: y}\n")
    out = cli("check", short, "--model", "qwen3_8b", "--baselines", base)
    assert out.returncode == 1 and "global_step 999 not reached (last logged: 499)" in out.stdout
    assert cli("check", full, "--model", "qwen3_8b", "--baselines", base).returncode == 0


def test_check_fails_on_nan_even_if_final_loss_is_fine(tmp_path):
    log = write_log(tmp_path / "nan.log", 1000, loss=lambda s: float("nan") if s == 300 else 3.0)
    out = cli("check", log, "--baseline-loss", "3.0")
    assert out.returncode == 1 and "loss NaN/inf at steps [300]" in out.stdout


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.log", None, "missing.log: no such log file"),
        ("empty.log", b"", "empty.log: no NeMo training lines"),
        ("junk.bin", b"\x00\xff" * 999, "junk.bin: no NeMo training lines"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    out = cli("check", tmp_path / name, "--baseline-loss", "3.0")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr and out.stderr.startswith("qwen-acceptance: error:")


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", SMOKE, "--baseline-loss", "2.7", "--tolerance", "5"], "--tolerance: is relative (0.05 = 5%)"),
        (["check", SMOKE, "--baseline-loss", "2.7", "--tolerance", "0"], "must be between 0 and 1, got 0"),
        (["check", SMOKE, "--baseline-loss", "2.7", "--tolerance", "-0.1"], "must be between 0 and 1, got -0.1"),
        (["check", SMOKE, "--baseline-loss", "2.7", "--tolerance", "nan"], "--tolerance: expected a finite number"),
        (["check", SMOKE, "--baseline-loss", "nan"], "--baseline-loss: expected a finite number, got 'nan'"),
        (["check", SMOKE, "--baseline-loss", "inf"], "--baseline-loss: expected a finite number, got 'inf'"),
        (["check", SMOKE, "--baseline-loss", "-3"], "--baseline-loss: must be positive, got -3"),
        (["check", SMOKE, "--baseline-loss", "2.7", "--final-step", "-1"], "--final-step: must be 0 or more"),
        (["summarize", SMOKE, "--gpus", "-1", "--seq-length", "1024"], "--gpus: must be at least 1, got -1"),
        (["summarize", SMOKE, "--gpus", "1", "--seq-length", "-5"], "--seq-length: must be at least 1, got -5"),
        (["memory", "qwen3_8b", "--gpu-memory", "0"], "--gpu-memory: must be positive, got 0"),
        (["memory", "qwen3_8b", "--gpu-memory", "nan"], "--gpu-memory: expected a finite number"),
        (["launch", "qwen3_8b", "--dry-run", "--probe", "--seed", "-1"], "--seed: must be 0 or more, got -1"),
    ],
    ids=lambda v: " ".join(map(str, v[2:])) if isinstance(v, list) else None,
)
def test_numbers_out_of_range_are_one_line_errors(args, message):
    """A tolerance of 5 (500%) or 0, a NaN baseline, a negative step or GPU count: refused, never a verdict."""
    out = cli(*args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_an_explicit_tolerance_is_used_as_given(tmp_path):
    log = write_log(tmp_path / "run.log", 1000, loss=lambda s: 3.03)
    out = cli("check", log, "--baseline-loss", "3.0", "--tolerance", "0.005")
    assert out.returncode == 1 and "+1.00% (tolerance ±0.5%)" in out.stdout


def test_summarize_reads_throughput_when_a_cut_last_line_is_outside_the_window(tmp_path):
    log = write_log(tmp_path / "run.log", 60)
    text = log.read_text().rstrip("\n").splitlines()
    last = next(i for i in range(len(text) - 1, -1, -1) if text[i].startswith("Training epoch"))
    text[last] = text[last][: text[last].index("tokens_per_sec_per_gpu")]  # the run died mid-line
    log.write_text("\n".join(text[: last + 1]))
    out = cli("summarize", log, "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["truncated_last_line"] and data["throughput_steps"] == 40


@pytest.mark.parametrize(
    "baselines, message",
    [
        ("qwen3_8b:\n  final_loss: null\n", "no measured baseline for 'qwen3_8b'"),  # a missing baseline never passes
        ("qwen3_8b: {final_loss: [\n", "b.yaml:2: invalid YAML"),  # a corrupt file is named with its line
    ],
)
def test_a_missing_or_corrupt_baseline_is_bad_input(tmp_path, baselines, message):
    log = write_log(tmp_path / "run.log", 1000, loss=lambda s: 3.0)
    base = tmp_path / "b.yaml"
    base.write_text(baselines)
    out = cli("check", log, "--model", "qwen3_8b", "--baselines", base)
    assert out.returncode == 2 and message in out.stderr


def test_launch_dry_run_prints_command_and_resolved_config(tmp_path):
    import yaml

    out = cli("launch", "qwen3_30b_a3b", "--dry-run", "--runs-dir", tmp_path, "--tokenizer", "bundled:qwen3")
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert config["command"][2] == "torch.distributed.run" and "--standalone" in config["command"]
    assert config["model"]["layout"] == "TP4 PP2 CP1 EP4 ETP1 SP" and config["model"]["global_batch_size"] == 32
    nemo = config["nemo_recipe"]
    assert nemo["parallel"]["expert"] == 4 and nemo["data"]["seq_length"] == 4096
    assert nemo["shape"]["num_moe_experts"] == 128 and nemo["optim"]["warmup_steps"] == 100
    assert not list(tmp_path.iterdir())  # a dry run creates nothing


@pytest.mark.parametrize(
    "change",
    [
        ["--override", "data.global_batch_size=64"],
        ["--override", "trainer.max_steps=10"],
        ["--override", "model.config.seq_length=2048"],
        ["--override", "trainer.devices=4"],
        ["--override", "trainer.strategy.tensor_model_parallel_size=3"],
        ["--max-steps", "10", "--warmup-steps", "2"],
        ["--seed", "4321"],
        ["--global-batch-size", "64"],
        ["--override", "optim.config.lr=9e-4"],
        ["--override", "optim.lr_scheduler.warmup_steps=5"],
        ["--override", "optim.lr_scheduler.max_steps=10"],
    ],
)
def test_launch_refuses_changes_to_what_the_reference_fixes(change):
    out = cli("launch", "qwen3_8b", "--dry-run", "--tokenizer", "bundled:qwen3", *change)
    errors = [line for line in out.stderr.splitlines() if line.startswith("qwen-acceptance:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr
    assert "the reference fixes these for an acceptance run (a probe may change them: --probe" in errors[0]


def test_a_dry_run_checks_a_local_corpus(tmp_path):
    out = cli("launch", "smoke_qwen3", "--dry-run", "--corpus", tmp_path / "none.jsonl")
    assert out.returncode == 2 and out.stderr.strip().endswith(
        "none.jsonl: no such corpus file (models.yaml data.corpus, or --corpus)"
    )


@pytest.mark.parametrize("command", ["launch", "bench"])
def test_a_run_without_the_gpus_is_refused_at_once(tmp_path, command):
    """No preprocessing, no torchrun, no run folder: one line, at once."""
    out = cli(command, "smoke_qwen3", "--runs-dir", tmp_path / "runs", "--data-cache", tmp_path / "cache")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "smoke_qwen3: needs 1 GPU(s) on this node, and nvidia-smi sees 0" in out.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_memory_refuses_a_shape_it_cannot_model():
    out = cli("memory", "qwen3_8b", "--override", "model.config.num_layers=-4")
    assert out.returncode == 2 and "qwen3_8b: the model's layers is -4: the memory model needs a positive" in out.stderr
    out = cli("memory", "qwen3_8b", "--override", "model.config.recompute_granularity=full")
    assert out.returncode == 2 and "full recompute needs model.config.recompute_method=uniform and" in out.stderr


def test_a_probe_may_change_what_the_reference_fixes():
    import yaml

    out = cli(
        "launch",
        "qwen3_8b",
        "--dry-run",
        "--tokenizer",
        "bundled:qwen3",
        "--probe",
        "--max-steps",
        "10",
        "--warmup-steps",
        "2",
        "--seed",
        "7",
        "--override",
        "data.global_batch_size=64",
    )
    assert out.returncode == 0, out.stderr
    assert "--probe" in yaml.safe_load(out.stdout)["command"]  # the training entry, and so its log, says so


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.config.weight_decay=fast", "override 'optim.config.weight_decay=fast': expected a finite number"),
        ("model.config.num_layers=abc", "override 'model.config.num_layers=abc': expected an integer"),
        ("model.config.num_layers=", "override 'model.config.num_layers=': expected a value"),
        ("model.config.nope=1", "override 'model.config.nope': the recipe has no 'nope'"),
    ],
)
def test_launch_checks_override_types_before_anything_starts(tmp_path, override, message):
    out = cli("launch", "smoke_qwen3", "--override", override, "--runs-dir", tmp_path, "--data-cache", tmp_path / "c")
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not list(tmp_path.iterdir())  # no run folder, no dataset, no process


def test_launch_reads_an_override_as_the_type_it_replaces():
    import yaml

    probe = ("launch", "qwen3_8b", "--dry-run", "--probe", "--tokenizer", "bundled:qwen3")  # lr: a probe's to change
    out = cli(*probe, "--override", "optim.config.lr=9e-4")
    assert yaml.safe_load(out.stdout)["nemo_recipe"]["optim"]["lr"] == 9e-4  # a number, not the string '9e-4'
    bad = cli(*probe, "--override", "optim.config.lr=x")
    assert bad.returncode == 2 and "expected a finite number" in bad.stderr  # a dry run checks them too


def test_launch_rejects_fewer_gpus_than_the_reference():
    out = cli("launch", "qwen3_8b", "--dry-run", "--gpus", "4", "--tokenizer", "bundled:qwen3")
    assert out.returncode == 2 and "field 'gpus' is 4, below the reference's 8" in out.stderr


def test_memory_reads_the_real_recipe_and_judges_a_card():
    out = cli("memory", "qwen2_72b", "--json")  # the recipe's TP8 PP4 on 32 GPUs, no sequence parallelism
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["layout"] == "TP8 PP4 CP1" and data["recompute"] is False
    assert 99 < data["peak_gib"] < 101 and data["fits"] == {"NVIDIA H200": True}
    too_small = cli("memory", "qwen2_72b", "--gpu-memory", "79")
    assert too_small.returncode == 1 and "does not fit" in too_small.stdout
    with_sp = cli("memory", "qwen2_72b", "--layout", "sp=true", "--gpu-memory", "79")
    assert with_sp.returncode == 0 and "fits" in with_sp.stdout


def test_memory_takes_recompute_from_the_overrides():
    out = cli(
        "memory",
        "qwen2_72b",
        "--json",
        "--layout",
        "sp=true",
        "--override",
        "model.config.recompute_granularity=full",
        "--override",
        "model.config.recompute_method=uniform",
        "--override",
        "model.config.recompute_num_layers=1",
    )
    data = json.loads(out.stdout)
    assert data["recompute"] is True and data["activations_gib"] < 2  # each layer's input only


@pytest.mark.parametrize(
    "args, message",
    [
        (["qwen3_30b_a3b"], "not context or expert parallelism (layout TP4 PP2 CP1 EP4 ETP1 SP)"),
        (
            [
                "qwen2_72b",
                "--override",
                "model.config.recompute_granularity=full",
                "--override",
                "model.config.recompute_method=block",
            ],
            "not 'block' or partial recompute",
        ),
    ],
)
def test_memory_refuses_what_it_does_not_model(args, message):
    out = cli("memory", *args)
    errors = [line for line in out.stderr.splitlines() if line.startswith("qwen-acceptance:")]
    assert out.returncode == 2 and len(errors) == 1 and message in errors[0], out.stderr


def test_sensitivity_refuses_an_unknown_variant_before_anything_starts(tmp_path):
    out = cli("sensitivity", "smoke_qwen3", "--faults", "lr_x9", "--runs-dir", tmp_path)
    assert (
        out.returncode == 2 and "--faults: unknown variant(s) lr_x9; the catalogue has rerun, seed_4321" in out.stderr
    )
    assert not list(tmp_path.iterdir())
