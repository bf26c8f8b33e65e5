"""Is the judged run the reference run? Real H200 logs, NeMo's real scheduler and recipes, and logs changed in one
value at a time: each difference is named, and what a log does not show is listed as not verified."""

import json
import re
from pathlib import Path

import pytest
from nemolog import write_log

from qwen_acceptance import models
from qwen_acceptance.judge import conformance, logparse
from qwen_acceptance.run import reference

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "fixtures" / "logs" / "smoke_qwen3.log"
RUNS = ROOT / "fixtures" / "smoke-runs"
MATRIX = models.load_matrix()


def check(path, model):
    spec = MATRIX[model]
    return conformance.check(logparse.parse_file(path), spec, reference.expected(spec))


def unflatten(flat):
    tree = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def with_resolved(tmp_path, source, change):
    """``source`` with its resolved line replaced by the reference's full configuration, ``change``d."""
    spec = MATRIX["smoke_qwen3"]
    resolved = {
        **json.loads(re.search(r"resolved: (.*)", source.read_text()).group(1)),
        **unflatten(reference.expected(spec)),
        "model": spec.name,
        "probe": False,
    }
    change(resolved)
    text = re.sub(
        r"(\[qwen-acceptance\] resolved: ).*", lambda m: m.group(1) + json.dumps(resolved), source.read_text()
    )
    path = tmp_path / "changed.log"
    path.write_text(text)
    return path


def test_reference_lr_is_the_schedule_of_the_recorded_runs():
    """The smoke runs' logged lr (4 digits) at every step, and the reference excerpt's step 527 of 1000."""
    spec = MATRIX["smoke_qwen3"]
    log = logparse.parse_file(SMOKE)
    for record in log.ordered():
        assert record.get("lr") == pytest.approx(conformance.reference_lr(record.step, spec.lr, 200), rel=1e-3)
    assert conformance.reference_lr(527, MATRIX["qwen3_8b"].lr, 1000) == pytest.approx(0.0001758, rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "lr, steps",
    [
        (models.LRSchedule(3e-4, 3e-5, 100), 1000),
        (models.LRSchedule(1e-3, 0.0, 0), 50),
        (models.LRSchedule(2e-4, 2e-5, 7), 30),
    ],
)
def test_reference_lr_is_nemos_cosine_annealing(lr, steps):
    import torch
    from nemo.core.optim.lr_scheduler import CosineAnnealing

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr.max)
    scheduler = CosineAnnealing(
        optimizer, max_steps=steps, min_lr=lr.min, warmup_steps=lr.warmup_steps, constant_steps=0
    )
    for step in range(steps + 3):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(conformance.reference_lr(step, lr, steps)), step
        optimizer.step()
        scheduler.step()


@pytest.mark.slow
def test_reference_config_file_is_what_nemo_builds():
    """reference_config.yaml holds, for every model, the values NeMo's recipe gives it: regenerate it with
    `python -m qwen_acceptance.run.reference --write` when the matrix or NeMo changes."""
    from qwen_acceptance import yamlio

    stored = yamlio.load(conformance.reference_path())
    assert list(stored) == list(MATRIX)
    for name, spec in MATRIX.items():
        assert stored[name]["fingerprint"] == conformance.fingerprint(spec), name
        assert dict(stored[name]["values"]) == reference.build(spec), name


@pytest.mark.parametrize(
    "path",
    [
        SMOKE,
        RUNS / "smoke_qwen3-h200x1-seed1234-rerun.log",
        RUNS / "smoke_qwen3-h200x2-dp2.log",
        RUNS / "smoke_qwen3-h200x2-tp2.log",
    ],
    ids=lambda p: p.stem,
)
def test_recorded_reference_runs_conform(path):
    result = check(path, "smoke_qwen3")
    assert result.conforms, result.differences
    assert {"global batch", "steps", "learning-rate schedule", "GPU count"} <= set(result.verified)
    # Written before the resolved line carried the optimizer and precision: said, not passed silently.
    (missing,) = [u for u in result.unverified if "not in the log's resolved line" in u]
    assert "weight_decay" in missing  # each by name, never hidden in "and N more"


def test_a_log_of_another_model_is_named():
    result = check(SMOKE, "smoke_qwen3_moe")
    assert "steps: the run planned 200 (reference 120)" in result.differences
    assert "model_config 'Qwen3Config8B' (reference 'Qwen3Config30B_A3B')" in result.differences
    assert "shape.num_moe_experts None (reference 8)" in result.differences
    assert any(d.startswith("learning rate at step ") for d in result.differences)


def test_another_seed_differs():
    assert check(RUNS / "smoke_qwen3-h200x1-seed4321.log", "smoke_qwen3").differences == (
        "data.seed 4321 (reference 1234)",
    )


@pytest.mark.parametrize(
    "change, difference",
    [
        (lambda r: r["optim"].update(weight_decay=0.0), "optim.weight_decay 0.0 (reference 0.1)"),
        (lambda r: r["optim"].update(adam_beta2=0.9), "optim.adam_beta2 0.9 (reference 0.95)"),
        (lambda r: r["precision"].update(plugin="16-mixed"), "precision.plugin '16-mixed' (reference 'bf16-mixed')"),
        (lambda r: r["shape"].update(qk_layernorm=False), "shape.qk_layernorm False (reference True)"),
        (lambda r: r.update(seed=99), "seed 99 (reference 1234)"),
        (lambda r: r.update(model="smoke_qwen3_moe"), "a run of smoke_qwen3_moe, judged as smoke_qwen3"),
        (
            lambda r: r.update(probe=True, changes_from_reference=["max_steps 30 (reference 200)"]),
            "a probe run, never an acceptance run: max_steps 30 (reference 200)",
        ),
    ],
)
def test_each_changed_value_is_named(tmp_path, change, difference):
    path = with_resolved(tmp_path, SMOKE, change)
    result = check(path, "smoke_qwen3")
    assert result.differences == (difference,)


def test_the_full_resolved_line_leaves_nothing_unverified(tmp_path):
    result = check(with_resolved(tmp_path, SMOKE, lambda r: None), "smoke_qwen3")
    assert result.conforms and not result.unverified


def test_layout_may_change_but_not_to_fewer_gpus(tmp_path):
    assert check(with_resolved(tmp_path, SMOKE, lambda r: r["parallel"].update(tensor=2)), "smoke_qwen3").conforms
    path = write_log(
        tmp_path / "four.log",
        1000,
        gbs=128,
        world_size=4,
        lr=lambda s: conformance.reference_lr(s, MATRIX["qwen3_8b"].lr, 1000),
    )
    assert "4 GPUs (the reference needs at least 8)" in check(path, "qwen3_8b").differences


def test_a_foreign_log_is_checked_from_its_progress_lines(tmp_path):
    spec = MATRIX["qwen3_8b"]
    good = write_log(
        tmp_path / "ok.log",
        1000,
        gbs=128,
        world_size=8,
        seconds=lambda s: 2.0,
        tokens=lambda s: 128 * 8192 / (2.0 * 8),
        lr=lambda s: conformance.reference_lr(s, spec.lr, 1000),
    )
    result = check(good, "qwen3_8b")
    assert result.conforms
    assert set(result.verified) == {"global batch", "steps", "learning-rate schedule", "GPU count", "sequence length"}
    assert result.unverified == (
        "seed, model shape, optimizer and precision (the log has no `[qwen-acceptance] resolved:` line)",
    )
    wrong = write_log(
        tmp_path / "bad.log", 900, gbs=64, seconds=lambda s: 2.0, tokens=lambda s: 64 * 4096 / 2.0, lr=lambda s: 3e-4
    )
    result = check(wrong, "qwen3_8b")
    assert "global batch 64 (reference 128)" in result.differences
    assert "steps: the run planned 900 (reference 1000)" in result.differences
    assert any(d.startswith("learning rate at step 0: 0.0003 (reference schedule 2.97e-06") for d in result.differences)
    assert "GPU count (not printed)" in result.unverified and "sequence length" in result.unverified
    short_seq = write_log(
        tmp_path / "seq.log",
        1000,
        gbs=128,
        world_size=8,
        seconds=lambda s: 2.0,
        tokens=lambda s: 128 * 4096 / (2.0 * 8),
        lr=lambda s: conformance.reference_lr(s, spec.lr, 1000),
    )
    assert (
        "sequence length about 4,096 from tokens/s, step time and 8 GPUs (reference 8192)"
        in check(short_seq, "qwen3_8b").differences
    )


def test_a_probe_log_never_conforms():
    """The 300-step slice that `bench` trained: a probe, of fewer layers, on one GPU."""
    result = check(ROOT / "fixtures/bench/long/qwen3_8b-4layers-gb2-300steps-h200.log", "qwen3_8b")
    assert "1 GPUs (the reference needs at least 8)" in result.differences
    assert "global batch 2 (reference 128)" in result.differences
    assert "shape.num_layers 4 (reference 36)" in result.differences


def test_reference_changes_name_what_the_reference_fixes():
    ref = MATRIX["qwen3_8b"]
    spec = ref.with_changes(
        probe=True, max_steps=200, seed=7, overrides={"data.global_batch_size": 64, "trainer.val_check_interval": 5}
    )
    assert conformance.reference_changes(ref, spec) == [
        "max_steps 200 (reference 1000)",
        "seed 7 (reference 1234)",
        "--override data.global_batch_size=64",
    ]
    assert conformance.reference_changes(ref, ref.with_changes(gpus=16, micro_batch_size=2)) == []
