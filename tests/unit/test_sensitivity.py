"""The fault matrix's machinery on a CPU: the catalogue is valid data whose every variant builds a real NeMo recipe,
and `run_matrix` drives real processes (the launcher replaying recorded smoke logs in place of training) into a
detection table. What the H200 runs measured is in BENCHMARKS.md."""

import json
import sys
from pathlib import Path

import pytest

from qwen_acceptance import models
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.run import monitor
from qwen_acceptance.run.plan import DataChoice
from qwen_acceptance.sensitivity import faults, table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RERUN = ROOT / "fixtures/smoke-runs/smoke_qwen3-h200x1-seed1234-rerun.log"
MATRIX = models.load_matrix()


def test_catalogue_has_both_kinds_and_every_variant_is_a_valid_probe():
    catalogue = faults.catalogue()
    kinds = {v.kind for v in catalogue.values()}
    assert kinds == {"honest", "broken"} and len(catalogue) >= 20
    for base in ("smoke_qwen3", "smoke_qwen3_moe"):
        for variant in catalogue.values():
            spec = variant.spec(MATRIX[base])
            assert spec.probe and spec.global_batch_size == MATRIX[base].global_batch_size, variant.name
    lr = catalogue["lr_x3"].spec(MATRIX["smoke_qwen3"]).lr
    assert (lr.max, lr.min) == pytest.approx((9e-4, 9e-5))


@pytest.mark.slow
@pytest.mark.parametrize("base", ["smoke_qwen3", "smoke_qwen3_moe"])
def test_every_variant_builds_its_nemo_recipe(base):
    """Every override path exists in the recipe and every value takes the type it replaces (fp16's dtypes too)."""
    import torch

    from qwen_acceptance.run import recipes

    for variant in faults.catalogue().values():
        recipe = recipes.for_reading(variant.spec(MATRIX[base]))
        if variant.name == "fp16":
            assert recipe.trainer.plugins.params_dtype is torch.float16 and recipe.optim.config.fp16 is True


@pytest.mark.parametrize(
    "text, message",
    [
        ("variants: {}\n", "expected a non-empty top-level 'variants' mapping"),
        ("variants: {a: {kind: odd, why: x}}\n", "variants.a: field 'kind' must be one of honest, broken"),
        ("variants: {a: {kind: broken}}\n", "variants.a: field 'why' must say what the variant stands for"),
        ("variants: {a: {kind: broken, why: x, lr: 3}}\n", "variants.a: unknown field(s) lr"),
        ("variants: {a: [1]}\n", "variants.a: must be a mapping"),
    ],
)
def test_a_bad_catalogue_is_one_line_naming_the_variant(tmp_path, text, message):
    path = tmp_path / "faults.yaml"
    path.write_text(text)
    with pytest.raises(AcceptanceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        faults.catalogue(path)


def test_selection_names_unknown_variants_and_adds_lr_scales():
    with pytest.raises(AcceptanceError, match="--faults: unknown variant\\(s\\) lr_x9"):
        faults.select(["lr_x9"], [])
    assert [v.name for v in faults.select(None, [1.5, 0.7])] == ["lr_x1.5", "lr_x0.7"]
    with pytest.raises(AcceptanceError, match="--lr-scale 0.0: must be positive"):
        faults.select(None, [0.0])


def _replaying(*replays):
    """An executor that runs, for each plan in turn, a real process replaying a recorded log as its training
    output (``replay_nemo.py`` with the given arguments)."""
    queue = iter(replays)

    def execute(plan, limits, progress):
        extra = next(queue)
        plan.run_dir.mkdir(parents=True)
        cmd = [sys.executable, str(HERE / "replay_nemo.py"), *map(str, extra)]
        return monitor.supervise(
            cmd,
            log_path=plan.log_path,
            name=plan.spec.name,
            total_steps=plan.spec.max_steps,
            limits=limits,
            env={"PYTHONPATH": str(HERE)},
        )

    return execute


def test_run_matrix_judges_each_variant_with_the_suites_checks(tmp_path):
    base = MATRIX["smoke_qwen3"]
    catalogue = faults.catalogue()
    variants = [catalogue["rerun"], catalogue["lr_x3"], catalogue["warmup_0"], catalogue["dp2"]]
    replays = (
        [RERUN],
        [RERUN, "--scale-loss", 0.6, "--scale-from", 30],  # lr_x3 derived: far below the curve
        [RERUN, "--stop-after-step", 3, "--exit-code", 1],
    )  # warmup_0 dies after 4 steps
    setup = table.Setup(
        runs_dir=tmp_path / "runs",
        data=DataChoice(prefix=_fake_prefix(tmp_path)),
        baselines_path=ROOT / "baselines.yaml",
    )
    rows = table.run_matrix(
        base, variants, tmp_path / "out", setup, progress=None, execute=_replaying(*replays), visible_gpus=1
    )
    assert [r.outcome for r in rows] == ["passed", "caught", "caught", "skipped"]
    rerun, lr3, warm, dp2 = rows
    assert all(c["passed"] for c in rerun.checks.values()) and rerun.conforms  # the recorded log replayed as is
    assert not lr3.checks["loss_curve_within_band"]["passed"] and lr3.checks["final_loss_within_tolerance"]["values"][
        "loss_delta_pct"
    ] == pytest.approx(-40, abs=1)
    assert not warm.checks["final_step_reached"]["passed"] and "training exited with code 1" in warm.reason
    assert dp2.reason == "needs 2 GPUs, 1 here"
    saved = json.loads((tmp_path / "out/table.json").read_text())
    assert [r["outcome"] for r in saved["rows"]] == ["passed", "caught", "caught", "skipped"]
    text = (tmp_path / "out/table.md").read_text()
    assert "| lr_x3 | broken | yes | **FAIL** -40.0% |" in text and "| dp2 | honest | skipped: needs 2 GPUs" in text
    assert (tmp_path / "out/logs/lr_x3.log").read_text().count("Training epoch") == 200


def test_a_variant_with_no_training_line_is_a_crashed_row(tmp_path):
    base = MATRIX["smoke_qwen3"]
    variant = faults.catalogue()["fp16"]
    empty = tmp_path / "empty.log"
    empty.write_text("[NeMo W 2026-11-29 10:00:00 nemo_logging:405] starting\n")
    setup = table.Setup(
        runs_dir=tmp_path / "runs",
        data=DataChoice(prefix=_fake_prefix(tmp_path)),
        baselines_path=ROOT / "baselines.yaml",
    )
    (row,) = table.run_matrix(
        base,
        [variant],
        tmp_path / "out",
        setup,
        progress=None,
        visible_gpus=1,
        execute=_replaying([empty, "--exit-code", 1]),
    )
    assert row.outcome == "crashed" and row.reason.startswith("training exited with code 1")


def _fake_prefix(tmp_path):
    """A dataset prefix the plan accepts; the replayed runs never read it."""
    prefix = tmp_path / "data" / "d_text_document"
    prefix.parent.mkdir()
    for suffix in (".bin", ".idx"):
        Path(f"{prefix}{suffix}").write_bytes(b"")
    return prefix
