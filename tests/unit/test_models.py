"""The model matrix: the reference's table as data, and a clear error for each rule it could break."""

from pathlib import Path

import pytest

from qwen_acceptance import models
from qwen_acceptance.errors import AcceptanceError

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = {  # model: (GPUs, global batch, seq length), from ../shared/seed/
    "qwen3_8b": (8, 128, 8192),
    "qwen25_7b": (8, 128, 8192),
    "qwen3_30b_a3b": (8, 32, 4096),
    "qwen2_72b": (32, 64, 8192),
    "qwen25_72b": (32, 64, 8192),
}


def test_matrix_holds_the_reference_table():
    matrix = models.load_matrix()
    for name, (gpus, gbs, seq) in REFERENCE.items():
        spec = matrix[name]
        assert (spec.reference_gpus, spec.global_batch_size, spec.seq_length) == (gpus, gbs, seq)
        assert spec.gpus >= gpus and spec.max_steps == 1000 and spec.final_step == 999 and spec.seed == 1234
        assert (spec.lr.max, spec.lr.min, spec.lr.warmup_steps) == (3e-4, 3e-5, 100)


def test_recipe_default_layouts():
    matrix = models.load_matrix()
    assert matrix["qwen3_8b"].layout.describe() == "TP4 PP1 CP1"
    assert matrix["qwen25_7b"].layout.describe() == "TP2 PP1 CP1"
    assert matrix["qwen3_30b_a3b"].layout.describe() == "TP4 PP2 CP1 EP4 ETP1 SP"
    assert matrix["qwen2_72b"].layout.describe() == "TP8 PP4 CP1"


def _matrix(tmp_path, **entry):
    base = {
        "recipe": "qwen3_8b",
        "reference_gpus": 8,
        "gpus": 8,
        "global_batch_size": 128,
        "seq_length": 8192,
        "layout": {"tp": 4},
    }
    base.update(entry)
    lines = [
        "defaults:",
        "  max_steps: 1000",
        "  seed: 1234",
        "  micro_batch_size: 1",
        "  lr: {max: 3.0e-4, min: 3.0e-5, warmup_steps: 100}",
        "  data: {corpus: c.jsonl, tokenizer: t}",
        "models:",
        "  m:",
    ]
    lines += [f"    {k}: {v}" for k, v in base.items()]
    path = tmp_path / "models.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"gpus": 4}, r"models\.m: field 'gpus' is 4, below the reference's 8"),
        ({"layout": {"tp": 3}}, r"models\.m: field 'layout': TP3 × PP1 × CP1 = 3 does not divide gpus=8"),
        (
            {"global_batch_size": 100, "layout": {"tp": 1}},
            r"field 'global_batch_size' 100 is not divisible by micro_batch_size × data-parallel size = 1 × 8",
        ),
        ({"layout": {"tp": 2, "pp": 2, "ep": 8}}, r"PP2 × EP8 × ETP1 = 16 does not divide gpus=8"),
        ({"seq_length": 0}, r"models\.m: field 'seq_length' must be a positive integer"),
        ({"layout": {"tp": 1, "sp": True}}, r"field 'layout.sp' needs tp > 1"),
        ({"layout": {"tq": 2}}, r"models\.m\.layout: unknown field\(s\) tq"),
        ({"colour": "red"}, r"models\.m: unknown field\(s\) colour"),
    ],
)
def test_violations_name_model_and_field(tmp_path, entry, message):
    with pytest.raises(AcceptanceError, match=message):
        models.load_matrix(_matrix(tmp_path, **entry))


def test_corrupt_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  m: {recipe: [\n")
    with pytest.raises(AcceptanceError, match=r"models\.yaml:\d+: invalid YAML"):
        models.load_matrix(path)


def test_unknown_model(tmp_path):
    with pytest.raises(AcceptanceError, match="unknown model 'nope'"):
        models.get_model("nope")


def test_parse_layout_over_a_base():
    base = models.load_matrix()["qwen3_30b_a3b"].layout
    assert models.parse_layout("tp=2,pp=4", base).describe() == "TP2 PP4 CP1 EP4 ETP1 SP"
    assert models.parse_layout("sp=false, cp=2", base).describe() == "TP4 PP2 CP2 EP4 ETP1"
    for bad, message in (
        ("tp2", "expected KEY=VALUE"),
        ("tp=two", "tp takes an integer"),
        ("sp=maybe", "sp takes"),
        ("tp=2,tp=4", "tp given twice"),
    ):
        with pytest.raises(AcceptanceError, match=message):
            models.parse_layout(bad, base)


@pytest.mark.parametrize(
    "layout, message",
    [
        ("vp=0", "field 'vp' must be a positive integer, got 0"),
        ("vp=-2", "field 'vp' must be a positive integer, got -2"),
        ("vp=2", r"field 'layout.vp' \(virtual pipeline stages\) needs pp > 1"),
    ],
)
def test_virtual_pipeline_needs_a_pipeline(layout, message):
    spec = models.load_matrix()["qwen3_8b"]
    with pytest.raises(AcceptanceError, match=message):
        spec.with_changes(layout=models.parse_layout(layout, spec.layout))
    assert spec.with_changes(gpus=8, layout=models.parse_layout("tp=2,pp=2,vp=2", spec.layout)).layout.vp == 2


def test_changes_are_checked_against_the_reference():
    spec = models.load_matrix()["qwen3_8b"]
    assert spec.with_changes(gpus=16).data_parallel == 4
    with pytest.raises(AcceptanceError, match=r"qwen3_8b \(with gpus=4\): field 'gpus' is 4, below the reference's 8"):
        spec.with_changes(gpus=4)
