"""The parser on real NeMo output, the reference excerpt, and every kind of damage a real log shows."""

import math
from pathlib import Path

import pytest
from nemolog import step_line, write_log

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import logparse

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_real_nemo_dense_log():
    log = logparse.parse_file(FIXTURES / "nemo25/nemo25-h200-tiny-qwen3-dense-60steps.log")
    assert sorted(log.steps) == list(range(60))
    assert log.steps[59].fields["reduced_train_loss"] == 6.52
    assert log.steps[59].fields["tokens_per_sec_per_gpu"] == 1.072e05
    assert log.steps[42].fields["lr"] == 9.529e-05
    assert "consumed_samples" not in log.steps[0].fields  # NeMo omits it at step 0
    assert log.planned_last_step == 59
    assert log.gpu_name == "NVIDIA H200"
    assert log.unreadable_lines == [] and log.repeated_steps == 0 and not log.truncated_last_line


def test_real_nemo_moe_log():
    log = logparse.parse_file(FIXTURES / "nemo25/nemo25-h200-tiny-qwen3-moe-30steps.log")
    assert sorted(log.steps) == list(range(30))
    assert log.steps[29].fields["reduced_train_loss"] == 9.112


def test_reference_excerpt_with_broken_timestamp_prefix():
    log = logparse.parse_file(FIXTURES / "logs/reference-excerpt.log")
    assert sorted(log.steps) == [527, 528, 529]
    first = log.steps[527]
    assert first.fields["tokens_per_sec_per_gpu"] == 6859.0
    assert first.fields["val_loss"] == 3.624
    assert first.fields["train_step_timing in s"] == 2.389
    assert first.planned_last_iteration == 999 and first.line == 1


def test_scientific_and_plain_notation():
    line = step_line(3, 9, 2.5, tokens=6.859e3, extra={"lr": 1.758e-4})
    rec = logparse.parse_text(line + "\n").steps[3]
    assert rec.fields["tokens_per_sec_per_gpu"] == 6859.0
    assert rec.fields["lr"] == pytest.approx(1.758e-4)
    assert rec.fields["global_batch_size"] == 16


def test_val_loss_absent_until_first_validation():
    text = step_line(0, 2, 5.0) + "\n" + step_line(1, 2, 4.0, extra={"val_loss": 4.5}) + "\n"
    log = logparse.parse_text(text)
    assert "val_loss" not in log.steps[0].fields and log.steps[1].fields["val_loss"] == 4.5


def test_noise_ansi_carriage_returns_and_tracebacks():
    text = (
        'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'
        "\x1b[32mEpoch 0: 10%|##  | 1/10\r" + step_line(0, 1, 5.0) + "\x1b[0m\n"
        "Sanity Checking: 0it [00:00, ?it/s]\r\x1b[1m" + step_line(1, 1, 4.0) + "\n"
    )
    log = logparse.parse_text(text)
    assert log.steps[0].fields["reduced_train_loss"] == 5.0
    assert log.steps[1].fields["reduced_train_loss"] == 4.0
    assert log.unreadable_lines == []


def test_truncated_last_line_drops_its_cut_field():
    text = step_line(0, 1, 5.0) + "\n" + step_line(1, 1, 4.25, extra={"val_loss": 3.5})[:-2]  # "val_loss: 3"
    log = logparse.parse_text(text)
    assert log.truncated_last_line
    assert "val_loss" not in log.steps[1].fields  # a cut "3.5" must not be read as 3
    assert log.steps[1].fields["reduced_train_loss"] == 4.25


def test_truncated_mid_loss_leaves_step_without_loss():
    text = step_line(0, 1, 5.0) + "\n" + "Training epoch 0, iteration 1/1 | lr: 0.0003 | global_step: 1 | reduced_tr"
    log = logparse.parse_text(text)
    assert "reduced_train_loss" not in log.steps[1].fields


def test_restart_last_occurrence_wins():
    lines = [step_line(s, 3, 9.0) for s in range(3)] + ["restarting..."]
    lines += [step_line(s, 3, 5.0 + s) for s in (1, 2, 3)]
    log = logparse.parse_text("\n".join(lines) + "\n")
    assert [log.steps[s].fields["reduced_train_loss"] for s in range(4)] == [9.0, 6.0, 7.0, 8.0]
    assert log.repeated_steps == 2
    assert log.steps[1].line == 5


def test_nan_and_inf_values_are_kept():
    log = logparse.parse_text(step_line(0, 1, float("nan")) + "\n" + step_line(1, 1, float("inf")) + "\n")
    assert math.isnan(log.steps[0].fields["reduced_train_loss"])
    assert math.isinf(log.steps[1].fields["reduced_train_loss"])


def test_malformed_field_is_counted_not_fatal():
    line = "Training epoch 0, iteration 0/1 | global_step: 0 | reduced_train_loss: 2.5 | lr: ???"
    log = logparse.parse_text(line + "\n")
    assert log.unreadable_lines == [1]
    assert log.steps[0].fields == {"global_step": 0.0, "reduced_train_loss": 2.5}


def test_foreign_text_has_no_training_lines(tmp_path):
    path = tmp_path / "foreign.log"
    path.write_text("INFO starting server\nGET / 200\n")
    log = logparse.parse_file(path)
    with pytest.raises(AcceptanceError, match=r"foreign\.log: no NeMo training lines .* in 2 lines"):
        log.require_steps()


def test_binary_junk_never_crashes(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(bytes(range(256)) * 64)
    log = logparse.parse_file(path)
    assert log.steps == {}


def test_empty_file(tmp_path):
    path = tmp_path / "empty.log"
    path.write_text("")
    with pytest.raises(AcceptanceError, match="empty.log: no NeMo training lines"):
        logparse.parse_file(path).require_steps()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AcceptanceError, match=r"nope\.log: no such log file"):
        logparse.parse_file(tmp_path / "nope.log")
    with pytest.raises(AcceptanceError, match="is a directory"):
        logparse.parse_file(tmp_path)


def test_incremental_feed_matches_whole_file(tmp_path):
    path = write_log(tmp_path / "run.log", 25)
    whole = logparse.parse_file(path)
    parser = logparse.LogParser("live")
    for raw in path.read_text().splitlines(keepends=True):
        parser.feed_line(raw)
    assert parser.log.steps == whole.steps
