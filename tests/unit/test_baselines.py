"""baselines.yaml: validation on load, missing entries never pass, updates keep everything else."""

from pathlib import Path

import pytest

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import baselines

ROOT = Path(__file__).resolve().parents[2]
PROVENANCE = {"date": "2026-11-28", "gpus": 8, "log_sha256": "ab" * 32, "gpu": "NVIDIA H200"}


def test_shipped_file_is_valid_and_unmeasured():
    entries = baselines.load(ROOT / "baselines.yaml")
    assert set(entries) == {"qwen3_8b", "qwen25_7b", "qwen3_30b_a3b", "qwen2_72b", "qwen25_72b"} | {
        name
        for name, e in entries.items()
        if e.measured  # measured ones are the smoke models, with provenance
    }
    for name in ("qwen3_8b", "qwen25_7b", "qwen3_30b_a3b", "qwen2_72b", "qwen25_72b"):
        assert not entries[name].measured  # no invented numbers
        with pytest.raises(AcceptanceError, match=f"no measured baseline for '{name}'.*--baseline-update"):
            baselines.require(entries, name, ROOT / "baselines.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("m: {final_loss: -1}\n", r"b\.yaml: m: field 'final_loss' must be a positive finite number, got -1"),
        ("m: {final_loss: .nan}\n", r"field 'final_loss' must be a positive finite number"),
        ("m: {final_loss: 'low'}\n", r"field 'final_loss' must be a positive finite number"),
        ("m: {final_loss: 2.0}\n", r"m: a measured baseline needs provenance field\(s\) date, gpus, log_sha256"),
        ("m: {tolerance: 5}\n", r"field 'tolerance' is relative"),
        ("m: {loss: 2.0}\n", r"m: unknown field\(s\) loss"),
        ("m: [1, 2]\n", r"m: entry must be a mapping"),
        ("- a\n- b\n", r"expected a mapping of model name"),
        ("m: {final_loss: 2.0\n", r"b\.yaml:2: invalid YAML"),
    ],
)
def test_corrupt_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(AcceptanceError, match=message):
        baselines.load(path)


def test_update_keeps_other_entries_comments_and_order(tmp_path):
    path = tmp_path / "baselines.yaml"
    original = (
        "# header comment\n"
        "alpha:\n  final_loss: 2.5  # kept\n  tolerance: 0.03\n  tokens_per_sec_per_gpu: 100.0\n"
        "  provenance: {date: '2026-01-01', gpus: 8, log_sha256: abc}\n"
        "# between\n"
        "beta:\n  final_loss: null\n  tolerance: 0.05\n"
        "gamma:\n  final_loss: null\n"
    )
    path.write_text(original)
    diff = baselines.apply_updates(path, {"beta": baselines.Update(3.25, 6859.0, PROVENANCE)})
    text = path.read_text()
    assert text.startswith("# header comment\nalpha:\n  final_loss: 2.5  # kept\n  tolerance: 0.03\n")
    assert "# between\n" in text and text.index("alpha") < text.index("beta") < text.index("gamma")
    entries = baselines.load(path)
    assert entries["alpha"].final_loss == 2.5 and entries["alpha"].tolerance == 0.03
    assert entries["beta"].final_loss == 3.25 and entries["beta"].tokens_per_sec_per_gpu == 6859.0
    assert entries["beta"].provenance["gpu"] == "NVIDIA H200"
    assert not entries["gamma"].measured
    assert "-  final_loss: null" in diff and "+  final_loss: 3.25" in diff
    assert not list(tmp_path.glob(".baselines.yaml.*"))  # no temporary left behind


def test_update_adds_a_new_entry(tmp_path):
    path = tmp_path / "baselines.yaml"
    path.write_text("alpha:\n  final_loss: null\n")
    baselines.apply_updates(path, {"new": baselines.Update(1.5, None, PROVENANCE)})
    assert set(baselines.load(path)) == {"alpha", "new"}


def test_update_refuses_to_overwrite_a_corrupt_file(tmp_path):
    path = tmp_path / "baselines.yaml"
    path.write_text("alpha: {final_loss: oops}\n")
    with pytest.raises(AcceptanceError, match="alpha: field 'final_loss'"):
        baselines.apply_updates(path, {"beta": baselines.Update(1.5, None, PROVENANCE)})
    assert path.read_text() == "alpha: {final_loss: oops}\n"
