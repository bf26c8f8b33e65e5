"""Start a model's training as torchrun in its own process group, watch its log as it arrives, stop it on NaN,
hang, time limit or (fail-fast) a loss curve that left the baseline's, and leave no rank behind.

Topology comes from the reference's launch variables (NNODES or NODE_COUNT, NODE_RANK, MASTER_ADDR, MASTER_PORT,
GPUS_PER_NODE) with pytest started on every node, or from Slurm, where ``srun`` starts one torchrun per node.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence, TextIO

from . import failfast, logparse, recipes
from .errors import AcceptanceError
from .logparse import LOSS, TOKENS_PER_GPU
from .models import ModelSpec

# NCCL and PyTorch settings a run gets unless the caller's environment says otherwise.
DEFAULT_ENV = {"PYTHONUNBUFFERED": "1", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"}


@dataclass(frozen=True)
class Topology:
    nnodes: int
    node_rank: int
    gpus_per_node: int
    master_addr: str
    master_port: int
    slurm: bool = False
    slurm_job_id: str | None = None

    @property
    def world_size(self) -> int:
        return self.nnodes * self.gpus_per_node

    @property
    def judges(self) -> bool:
        """Global rank 0 prints the progress lines: its node (or the Slurm batch host) judges the loss."""
        return self.slurm or self.node_rank == 0


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise AcceptanceError(f"environment variable {name}={value!r}: expected an integer") from None


def _slurm_master(env: Mapping[str, str]) -> str:
    if env.get("MASTER_ADDR"):
        return env["MASTER_ADDR"]
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        raise AcceptanceError(f"Slurm: cannot find the first host of '{nodelist}'; set MASTER_ADDR") from None


def topology_from_env(spec: ModelSpec, env: Mapping[str, str] | None = None) -> Topology:
    """Where this run's ranks live, from the environment; the GPU count must equal the model's."""
    env = os.environ if env is None else env
    port = _int(env, "MASTER_PORT", 29500)
    if env.get("SLURM_JOB_ID") and _int(env, "SLURM_NNODES", 1) > 1 and not env.get("SLURM_STEP_ID"):
        nnodes = _int(env, "SLURM_NNODES", 1)
        per_node = _int(env, "GPUS_PER_NODE", _int(env, "SLURM_GPUS_ON_NODE", spec.gpus // nnodes))
        topo = Topology(nnodes, 0, per_node, _slurm_master(env), port, slurm=True, slurm_job_id=env["SLURM_JOB_ID"])
    else:
        nnodes = _int(env, "NNODES", _int(env, "NODE_COUNT", 1))
        per_node = _int(env, "GPUS_PER_NODE", spec.gpus // nnodes if nnodes > 1 else spec.gpus)
        topo = Topology(nnodes, _int(env, "NODE_RANK", 0), per_node, env.get("MASTER_ADDR", "127.0.0.1"), port)
    if topo.world_size != spec.gpus:
        raise AcceptanceError(
            f"{spec.name} needs {spec.gpus} GPUs; the launch variables give {topo.nnodes} node(s) × "
            f"{topo.gpus_per_node} GPUs = {topo.world_size}"
        )
    if not 0 <= topo.node_rank < topo.nnodes:
        raise AcceptanceError(f"NODE_RANK={topo.node_rank} is outside 0..{topo.nnodes - 1}")
    return topo


def command(spec: ModelSpec, topo: Topology, *, data_prefix: Path, tokenizer_dir: Path, run_dir: Path,
            models_file: Path | None = None, te: str = "auto", attention: str = "auto",
            python: str = sys.executable) -> list[str]:
    """The exact command line: torchrun (``python -m torch.distributed.run``) over ``qwen_acceptance.train``."""
    lay = spec.layout
    layout = f"tp={lay.tp},pp={lay.pp},cp={lay.cp},ep={lay.ep},etp={lay.etp},sp={str(lay.sp).lower()}"
    if lay.vp:
        layout += f",vp={lay.vp}"
    train = ["-m", "qwen_acceptance.train", spec.name, "--data-prefix", str(data_prefix),
             "--tokenizer-dir", str(tokenizer_dir), "--run-dir", str(run_dir), "--nodes", str(topo.nnodes),
             "--gpus", str(spec.gpus), "--layout", layout, "--seed", str(spec.seed),
             "--max-steps", str(spec.max_steps), "--global-batch-size", str(spec.global_batch_size),
             "--micro-batch-size", str(spec.micro_batch_size), "--warmup-steps", str(spec.lr.warmup_steps),
             "--te", te, "--attention", attention]
    train += [f"--override={key}={json.dumps(value)}" for key, value in spec.overrides.items()]
    if spec.probe or spec.gpus < spec.reference_gpus:
        train.append("--probe")
    if models_file is not None:
        train += ["--models", str(models_file)]
    torchrun = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(topo.gpus_per_node)]
    if topo.slurm:
        return ["srun", f"--nodes={topo.nnodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", *torchrun,
                "--nnodes", str(topo.nnodes), "--rdzv-id", str(topo.slurm_job_id), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"{topo.master_addr}:{topo.master_port}", *train]
    if topo.nnodes == 1:
        return [*torchrun, "--standalone", "--nnodes", "1", *train]
    return [*torchrun, "--nnodes", str(topo.nnodes), "--node-rank", str(topo.node_rank), "--master-addr",
            topo.master_addr, "--master-port", str(topo.master_port), *train]


def visible_gpus() -> int:
    """NVIDIA GPUs on this machine (nvidia-smi, without initialising CUDA in this process)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    count = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    limit = os.environ.get("CUDA_VISIBLE_DEVICES")
    return min(count, len([d for d in limit.split(",") if d.strip()])) if limit is not None else count


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


class _Progress:
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
        line = (f"[{self.name}] step {record.step + 1}/{self.total}  loss {loss if loss is not None else '?'}  "
                f"{f'{tps:,.0f}' if tps else '?'} tok/s/GPU  ETA {_duration(eta)}")
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


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
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


def run(cmd: Sequence[str], *, log_path: Path, name: str, total_steps: int, limits: Limits = Limits(),
        env: Mapping[str, str] | None = None, progress: TextIO | None = None,
        on_step: Callable[[logparse.StepRecord], None] | None = None,
        watch: failfast.Watch | None = None) -> Outcome:
    """Run ``cmd`` in a new process group, writing everything it prints to ``log_path`` and parsing it live;
    ``watch`` compares each step with the baseline for the live line, and may stop the run (fail-fast)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**DEFAULT_ENV, **(os.environ if env is None else env)}
    parser = logparse.LogParser(str(log_path))
    tail: deque[str] = deque(maxlen=40)
    state = {"last_step_at": None, "abort": None}
    live = _Progress(name, total_steps, progress)
    lock = threading.Lock()

    with log_path.open("w", encoding="utf-8") as log_file:
        log_file.write(f"# {shlex.join(cmd)}\n")
        log_file.flush()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True, bufsize=1, text=True, errors="replace")

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                log_file.flush()
                tail.append(line.rstrip("\n"))
                with lock:
                    record = parser.feed_line(line, complete=line.endswith("\n"))
                    if record is None:
                        continue
                    state["last_step_at"] = time.monotonic()
                    loss = record.get(LOSS)
                    if loss is not None and not math.isfinite(loss) and state["abort"] is None:
                        state["abort"] = f"loss is {loss} at step {record.step}"
                    if watch is not None and state["abort"] is None:
                        watch.update(parser.log, record)
                        state["abort"] = watch.stopped
                live.step(record, watch.status() if watch is not None else "")
                if on_step is not None:
                    on_step(record)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        start = time.monotonic()
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                now = time.monotonic()
                with lock:
                    last = state["last_step_at"]
                    if state["abort"] is None:
                        if limits.wall is not None and now - start > limits.wall:
                            state["abort"] = f"wall-clock limit of {limits.wall:.0f} s reached"
                        elif last is None and limits.startup is not None and now - start > limits.startup:
                            state["abort"] = f"no training step within {limits.startup:.0f} s of the start"
                        elif last is not None and limits.hang is not None and now - last > limits.hang:
                            state["abort"] = f"no new step for {limits.hang:.0f} s (hung?)"
                    if state["abort"] is not None:
                        break
        except KeyboardInterrupt:
            state["abort"] = "interrupted (Ctrl-C)"
            raise
        finally:
            if proc.poll() is None:
                _stop_group(proc)
            reader.join(timeout=30)
            live.done()
            if state["abort"]:
                log_file.write(f"# qwen-acceptance: run stopped: {state['abort']}\n")
    return Outcome(proc.returncode, log_path, parser.log, state["abort"], list(tail))


# Where data and runs live and when to give up: one table for the command line (argparse) and the pytest plugin
# (its addoption takes the same keywords).
OPTIONS: tuple[tuple[str, dict], ...] = (
    ("--runs-dir", {"type": Path, "default": Path("runs"), "help": "run folders go here (default: ./runs)"}),
    ("--data-prefix", {"type": Path, "help": "a prepared dataset (PREFIX.bin/.idx) instead of the model's corpus"}),
    ("--corpus", {"help": "another corpus than models.yaml's (a path or hf://datasets/REPO/FILE)"}),
    ("--tokenizer", {"help": "another tokenizer than models.yaml's (a directory, a hub id, bundled:qwen3)"}),
    ("--data-cache", {"type": Path, "help": "preprocessed datasets (default: $QWEN_ACCEPTANCE_CACHE or "
                                            "~/.cache/qwen-acceptance)"}),
    ("--te", {"choices": recipes.TE_CHOICES, "default": "auto",
              "help": "Transformer Engine: auto uses it when it imports"}),
    ("--attention", {"choices": recipes.ATTENTION_CHOICES, "default": "auto",
                     "help": "core attention: auto takes TE's where TE is used, else PyTorch SDPA"}),
    ("--startup-timeout", {"type": float, "default": 1800.0, "help": "seconds allowed to the first step"}),
    ("--hang-timeout", {"type": float, "default": 600.0, "help": "seconds allowed without a new step"}),
    ("--time-limit", {"type": float, "help": "wall-clock seconds for a whole run (default: none)"}),
)


def data_choice(options: object) -> "DataChoice":
    """The data options out of an argparse namespace or pytest's option namespace."""
    return DataChoice(getattr(options, "data_prefix"), getattr(options, "corpus"), getattr(options, "tokenizer"),
                      getattr(options, "data_cache"))


def limits(options: object) -> Limits:
    return Limits(getattr(options, "startup_timeout"), getattr(options, "hang_timeout"),
                  getattr(options, "time_limit"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("QWEN_ACCEPTANCE_CACHE") or Path.home() / ".cache" / "qwen-acceptance")


@dataclass(frozen=True)
class DataChoice:
    """Where the run's tokens come from: a prepared dataset, or the model's corpus preprocessed into the cache."""

    prefix: Path | None = None
    corpus: str | None = None
    tokenizer: str | None = None
    cache_dir: Path | None = None
    append_eod: bool = False  # each document ends with the eos token (the reference appends none)


@dataclass(frozen=True)
class Plan:
    spec: ModelSpec
    topology: Topology
    run_dir: Path
    log_path: Path
    data_prefix: Path
    tokenizer_dir: Path
    command: list[str]


def plan(spec: ModelSpec, *, runs_dir: Path, data: DataChoice, models_file: Path | None = None, te: str = "auto",
         attention: str = "auto", env: Mapping[str, str] | None = None, prepare_data: bool = True) -> Plan:
    """Everything a run needs, decided before it starts; ``prepare_data=False`` (a dry run) builds nothing."""
    from . import datacache, sources

    topo = topology_from_env(spec, env)
    tokenizer_name = data.tokenizer or spec.data.tokenizer
    tokenizer_dir = sources.resolve_tokenizer(tokenizer_name)
    if data.prefix is not None:
        prefix = data.prefix
        if not Path(f"{prefix}.bin").is_file() or not Path(f"{prefix}.idx").is_file():
            raise AcceptanceError(f"--data-prefix {prefix}: {prefix}.bin and {prefix}.idx must both exist")
    elif prepare_data:
        corpus = sources.resolve_input(data.corpus or spec.data.corpus)
        if not corpus.is_file():
            raise AcceptanceError(f"{corpus}: no such corpus file (models.yaml data.corpus, or --corpus)")
        prefix = datacache.ensure_dataset(corpus, tokenizer_name, data.cache_dir or default_cache_dir(),
                                          append_eod=data.append_eod).prefix
    else:
        prefix = Path(f"<{data.corpus or spec.data.corpus} preprocessed at launch>")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = (runs_dir / spec.name / f"{stamp}-node{topo.node_rank}-{os.getpid()}").resolve()
    cmd = command(spec, topo, data_prefix=prefix, tokenizer_dir=tokenizer_dir, run_dir=run_dir,
                  models_file=models_file, te=te, attention=attention)
    return Plan(spec, topo, run_dir, run_dir / "train.log", prefix, tokenizer_dir, cmd)


def execute(p: Plan, *, limits: Limits = Limits(), progress: TextIO | None = None,
            watch: failfast.Watch | None = None) -> Outcome:
    """Run the plan in a fresh run folder (the command beside the log, for rerunning by hand)."""
    p.run_dir.mkdir(parents=True, exist_ok=False)
    (p.run_dir / "command.sh").write_text("#!/usr/bin/env bash\n" + shlex.join(p.command) + "\n")
    return run(p.command, log_path=p.log_path, name=p.spec.name, total_steps=p.spec.max_steps, limits=limits,
               progress=progress, watch=watch)
