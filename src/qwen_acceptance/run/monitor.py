"""Watch a training process: the rules that stop it (NaN loss, no first step, a hang, the wall-clock limit,
fail-fast) in a ``Monitor`` that is fed lines and asked the time, so they are testable without processes; and
``supervise``, which runs the command in its own process group, feeds the monitor, draws the live line, and
leaves no rank behind."""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from qwen_acceptance.judge import failfast, logparse
from qwen_acceptance.judge.logparse import LOSS, TOKENS_PER_GPU

# NCCL and PyTorch settings a run gets unless the caller's environment says otherwise.
DEFAULT_ENV = {"PYTHONUNBUFFERED": "1", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"}
TAIL_LINES = 40
INTERRUPTED = "interrupted (Ctrl-C)"


@dataclass(frozen=True)
class Limits:
    """When to give up on a run: no first step, no new step, or too long in all (seconds; None: no limit)."""

    startup: float | None = 1800.0
    hang: float | None = 600.0
    wall: float | None = None


@dataclass
class Outcome:
    returncode: int | None
    log_path: Path
    log: logparse.TrainingLog
    abort_reason: str | None = None
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.abort_reason is None

    def failure(self) -> str:
        why = self.abort_reason or f"training exited with code {self.returncode}"
        return f"{why}; log: {self.log_path}\n--- last lines ---\n" + "\n".join(self.tail)


class Monitor:
    """The stop rules of a live run. ``feed`` takes each line of output as it arrives, ``check`` the time on each
    tick; once either has found a reason to stop, ``abort`` holds it and later findings do not replace it."""

    def __init__(
        self, source: str, *, limits: Limits = Limits(), watch: failfast.Watch | None = None, start: float = 0.0
    ) -> None:
        self.parser = logparse.LogParser(source)
        self.limits, self.watch, self.start = limits, watch, start
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_step_at: float | None = None
        self.abort: str | None = None

    @property
    def log(self) -> logparse.TrainingLog:
        return self.parser.log

    def feed(self, line: str, now: float) -> logparse.StepRecord | None:
        """One line of output (``complete`` when it ended with a newline); the step it logged, if any."""
        self.tail.append(line.rstrip("\n"))
        record = self.parser.feed_line(line, complete=line.endswith("\n"))
        if record is None:
            return None
        self.last_step_at = now
        loss = record.get(LOSS)
        if loss is not None and not math.isfinite(loss):
            self._stop(f"loss is {loss} at step {record.step}")
        if self.watch is not None and self.abort is None:
            self.watch.update(self.log, record)
            self._stop(self.watch.stopped)
        return record

    def check(self, now: float) -> str | None:
        """The time rules at ``now``; returns the reason to stop, if there is one by now."""
        lim, last = self.limits, self.last_step_at
        if lim.wall is not None and now - self.start > lim.wall:
            self._stop(f"wall-clock limit of {lim.wall:.0f} s reached")
        elif last is None and lim.startup is not None and now - self.start > lim.startup:
            self._stop(f"no training step within {lim.startup:.0f} s of the start")
        elif last is not None and lim.hang is not None and now - last > lim.hang:
            self._stop(f"no new step for {lim.hang:.0f} s (hung?)")
        return self.abort

    def status(self) -> str:
        return self.watch.status() if self.watch is not None else ""

    def _stop(self, reason: str | None) -> None:
        if self.abort is None and reason is not None:
            self.abort = reason


class Progress:
    """One live line (step/total, loss, tokens/s/GPU, ETA, and where the run stands against its baseline): redrawn
    on a terminal, every 30 s in CI logs."""

    def __init__(self, name: str, total: int, stream: TextIO | None) -> None:
        self.name, self.total, self.stream = name, total, stream
        self.tty = bool(stream and stream.isatty())
        self.last_print = 0.0
        self.first_step_at: tuple[float, int] | None = None

    def step(self, record: logparse.StepRecord, status: str = "") -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if self.first_step_at is None:
            self.first_step_at = (now, record.step)
        t0, s0 = self.first_step_at
        rate = (record.step - s0) / (now - t0) if now > t0 and record.step > s0 else 0.0
        eta = (self.total - 1 - record.step) / rate if rate else math.nan
        loss, tps = record.get(LOSS), record.get(TOKENS_PER_GPU)
        line = (
            f"[{self.name}] step {record.step + 1}/{self.total}  loss {loss if loss is not None else '?'}  "
            f"{f'{tps:,.0f}' if tps else '?'} tok/s/GPU  ETA {duration(eta)}"
        )
        if status:
            line += f"  | {status}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
        elif now - self.last_print >= 30 or record.step + 1 == self.total:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_print = now

    def done(self) -> None:
        if self.tty and self.stream is not None:
            self.stream.write("\n")


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """End every process of the run's group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # torchrun's children may outlive it for a moment: make sure the group is empty.
            os.killpg(proc.pid, signal.SIGKILL)
            _wait_group_gone(proc.pid)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_group_gone(pgid: int, timeout: float = 5.0) -> None:
    """SIGKILL is delivered asynchronously: return once no live process of the group is left (its GPU memory is
    free for the next run). Orphans that are already zombies wait for their reaper and count as gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _live_members(pgid):
        time.sleep(0.05)


def _live_members(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


def supervise(
    cmd: Sequence[str],
    *,
    log_path: Path,
    name: str,
    total_steps: int,
    limits: Limits = Limits(),
    env: Mapping[str, str] | None = None,
    progress: TextIO | None = None,
    on_step: Callable[[logparse.StepRecord], None] | None = None,
    watch: failfast.Watch | None = None,
    stop: threading.Event | None = None,
) -> Outcome:
    """Run ``cmd`` in a new process group, writing everything it prints to ``log_path`` and feeding it to a
    ``Monitor``; ``watch`` compares each step with the baseline for the live line, and may stop the run. Setting
    ``stop`` (from another thread: a Ctrl-C there, where this runs beside other runs) ends the run as interrupted."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**DEFAULT_ENV, **(os.environ if env is None else env)}
    monitor = Monitor(str(log_path), limits=limits, watch=watch, start=time.monotonic())
    live = Progress(name, total_steps, progress)
    lock = threading.Lock()

    with log_path.open("w", encoding="utf-8") as log_file:
        log_file.write(f"# {shlex.join(cmd)}\n")
        log_file.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            bufsize=1,
            text=True,
            errors="replace",
        )

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                log_file.flush()
                with lock:
                    record = monitor.feed(line, time.monotonic())
                if record is None:
                    continue
                live.step(record, monitor.status())
                if on_step is not None:
                    on_step(record)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                with lock:
                    if stop is not None and stop.is_set():
                        monitor._stop(INTERRUPTED)
                    if monitor.check(time.monotonic()) is not None:
                        break
        except KeyboardInterrupt:
            with lock:
                monitor.abort = INTERRUPTED
            raise
        finally:
            if proc.poll() is None:
                stop_group(proc)
            reader.join(timeout=30)
            live.done()
            if monitor.abort:
                log_file.write(f"# qwen-acceptance: run stopped: {monitor.abort}\n")
    return Outcome(proc.returncode, log_path, monitor.log, monitor.abort, list(monitor.tail))
