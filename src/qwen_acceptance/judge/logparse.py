"""Read NeMo's ProgressPrinter lines out of a training log, whatever else the log holds.

NeMo prints one line per step on global rank 0:
``Training epoch 0, iteration 527/999 | lr: 0.0001758 | global_step: 527 | reduced_train_loss: 2.792 | ...``.
Real logs mix these with warnings, tracebacks, progress bars (carriage returns), colour codes and timestamp
prefixes from the launcher, may stop mid-line when a job is killed, and repeat steps after a restart. The parser
never raises on such text: it keeps what it can trust and counts what it could not read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qwen_acceptance.errors import AcceptanceError

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_HEAD = re.compile(r"Training epoch (?P<epoch>\d+), iteration (?P<iteration>\d+)/(?P<last>\d+)")
_DEVICE = re.compile(r"CUDA device \('(?P<name>[^']+)'\)")
# NeMo lists its process groups at start ("All data parallel group ranks ...: [[0, 1, ...]]"): the world size.
_GROUP_RANKS = re.compile(r"All [\w ]*group ranks[\w ]*: (?P<ranks>\[\[[\d, \[\]]*\]\])")
_NEMO_STAMP = re.compile(r"\[NeMo [IWE] (?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")
_FIELD_SEP = " | "

# Lines the suite's own training entry prints once on rank 0, so a log carries its provenance.
ENV_MARKER = "[qwen-acceptance] environment: "
CONFIG_MARKER = "[qwen-acceptance] resolved: "
PEAK_MARKER = "[qwen-acceptance] peak_memory: "  # one line per rank at the end of training

LOSS = "reduced_train_loss"
TOKENS_PER_GPU = "tokens_per_sec_per_gpu"
STEP_TIME = "train_step_timing in s"


@dataclass(frozen=True)
class StepRecord:
    """One training step as NeMo printed it; ``line`` is the 1-based line number in the log."""

    step: int
    epoch: int
    iteration: int
    planned_last_iteration: int
    fields: dict[str, float]
    line: int

    def get(self, key: str) -> float | None:
        return self.fields.get(key)


@dataclass
class TrainingLog:
    """What a log says about training: steps by number (the last occurrence wins) and what could not be read."""

    source: str
    steps: dict[int, StepRecord] = field(default_factory=dict)
    lines_read: int = 0
    training_lines: int = 0
    unreadable_lines: list[int] = field(default_factory=list)
    repeated_steps: int = 0
    truncated_last_line: bool = False
    gpu_name: str | None = None
    started: str | None = None  # NeMo's first log timestamp: when the run began
    environment: dict = field(default_factory=dict)  # from the suite's own ENV_MARKER line, when present
    resolved: dict = field(default_factory=dict)  # from its CONFIG_MARKER line
    peak_memory: list = field(default_factory=list)  # from the PEAK_MARKER lines, one per rank
    world_size: int | None = None  # from NeMo's process-group lines, when it printed them

    @property
    def shape(self) -> dict:
        """The model shape in the resolved line ("shape"; logs before it was named carry it as "model")."""
        shape = self.resolved.get("shape", self.resolved.get("model"))
        return shape if isinstance(shape, dict) else {}

    def ordered(self) -> list[StepRecord]:
        """Steps sorted by step number: the order the reference rules count in."""
        return [self.steps[s] for s in sorted(self.steps)]

    @property
    def last_step(self) -> int | None:
        return max(self.steps) if self.steps else None

    @property
    def planned_last_step(self) -> int | None:
        """The last iteration the run announced (``iteration I/N`` gives N), read off its latest line."""
        if not self.steps:
            return None
        return self.steps[self.last_step].planned_last_iteration

    def require_steps(self) -> None:
        if not self.steps:
            raise AcceptanceError(
                f"{self.source}: no NeMo training lines ('Training epoch E, iteration I/N | ...') "
                f"in {self.lines_read} lines"
            )


def _parse_value(text: str) -> float | None:
    """NeMo prints 4 significant digits, plain or scientific; 'nan'/'inf' are kept for the metrics to reject."""
    try:
        return float(text)
    except ValueError:
        return None


class LogParser:
    """Incremental parser: feed lines as they arrive (a live run) or all at once (a recorded log)."""

    def __init__(self, source: str) -> None:
        self.log = TrainingLog(source=source)

    def feed_line(self, raw: str, *, complete: bool = True) -> StepRecord | None:
        """Parse one physical line; ``complete=False`` marks a last line cut off without its newline."""
        log = self.log
        log.lines_read += 1
        line_no = log.lines_read
        text = _ANSI.sub("", raw.rstrip("\r\n"))
        if log.started is None and (stamp := _NEMO_STAMP.search(text)):
            log.started = stamp.group("stamp")
        if groups := _GROUP_RANKS.search(text):
            ranks = [int(r) for r in re.findall(r"\d+", groups.group("ranks"))]
            log.world_size = max(log.world_size or 0, max(ranks, default=-1) + 1) or None
        if log.gpu_name is None and (device := _DEVICE.search(text)):
            log.gpu_name = device.group("name")
        for marker, target in (
            (ENV_MARKER, log.environment),
            (CONFIG_MARKER, log.resolved),
            (PEAK_MARKER, log.peak_memory),
        ):
            if text.startswith(marker) and complete:
                try:
                    value = json.loads(text[len(marker) :])
                    target.append(value) if isinstance(target, list) else target.update(value)
                except (ValueError, TypeError, AttributeError):
                    log.unreadable_lines.append(line_no)
        record = None
        # A carriage return overwrites the terminal line: each segment is a line of its own.
        for segment in text.split("\r"):
            head = _HEAD.search(segment)
            if head is None:
                continue
            record = self._parse_training_segment(segment, head, line_no, complete) or record
        return record

    def _parse_training_segment(
        self, segment: str, head: re.Match[str], line_no: int, complete: bool
    ) -> StepRecord | None:
        log = self.log
        log.training_lines += 1
        parts = segment[head.end() :].split(_FIELD_SEP)
        if not complete:
            # The field after the last separator may be cut short ("2.79" of "2.792"): never trust it.
            log.truncated_last_line = True
            parts = parts[:-1]
        fields: dict[str, float] = {}
        bad = False
        for part in parts:
            if not part.strip():
                continue
            key, sep, value = part.partition(": ")
            parsed = _parse_value(value) if sep else None
            if parsed is None:
                bad = True
                continue
            fields[key.strip()] = parsed
        if bad or not fields:
            log.unreadable_lines.append(line_no)
        if LOSS not in fields and "global_step" not in fields:
            return None
        iteration = int(head.group("iteration"))
        step_value = fields.get("global_step", iteration)
        step = int(step_value) if math.isfinite(step_value) else iteration
        record = StepRecord(
            step=step,
            epoch=int(head.group("epoch")),
            iteration=iteration,
            planned_last_iteration=int(head.group("last")),
            fields=fields,
            line=line_no,
        )
        if step in log.steps:
            log.repeated_steps += 1
            del log.steps[step]  # keep insertion order meaningful: the rerun happened later
        log.steps[step] = record
        return record

    def feed(self, lines: Iterable[str]) -> TrainingLog:
        for raw in lines:
            self.feed_line(raw, complete=raw.endswith("\n"))
        return self.log


def parse_text(text: str, source: str = "<text>") -> TrainingLog:
    return LogParser(source).feed(text.splitlines(keepends=True))


def parse_file(path: str | Path) -> TrainingLog:
    """Parse a recorded log; undecodable bytes are replaced, so binary junk yields 'no training lines'."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8", errors="replace", newline="\n") as handle:
            return LogParser(str(path)).feed(handle)
    except FileNotFoundError:
        raise AcceptanceError(f"{path}: no such log file") from None
    except IsADirectoryError:
        raise AcceptanceError(f"{path}: is a directory, not a log file") from None
    except OSError as exc:
        raise AcceptanceError(f"{path}: cannot read log: {exc.strerror}") from None
