"""A run decided before it starts: its topology, data, folder and exact command (torchrun over the per-rank entry
``python -m qwen_acceptance.train``); ``execute`` runs it under the monitor, ``describe`` is what a dry run
prints."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import failfast
from qwen_acceptance.models import ModelSpec
from qwen_acceptance.run import recipes
from qwen_acceptance.run.monitor import Limits, Outcome, supervise
from qwen_acceptance.run.topology import Topology, topology_from_env


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
    data_tokenizer: str | None = None  # the corpus tokenized with another tokenizer than the run's (a fault variant)


@dataclass(frozen=True)
class Plan:
    spec: ModelSpec
    topology: Topology
    run_dir: Path
    log_path: Path
    data_prefix: Path
    tokenizer_dir: Path
    command: list[str]


def command(
    spec: ModelSpec,
    topo: Topology,
    *,
    data_prefix: Path,
    tokenizer_dir: Path,
    run_dir: Path,
    models_file: Path | None = None,
    te: str = "auto",
    attention: str = "auto",
    python: str = sys.executable,
) -> list[str]:
    """The exact command line: torchrun (``python -m torch.distributed.run``) over ``qwen_acceptance.train``."""
    lay = spec.layout
    layout = f"tp={lay.tp},pp={lay.pp},cp={lay.cp},ep={lay.ep},etp={lay.etp},sp={str(lay.sp).lower()}"
    if lay.vp:
        layout += f",vp={lay.vp}"
    train = [
        "-m",
        "qwen_acceptance.train",
        spec.name,
        "--data-prefix",
        str(data_prefix),
        "--tokenizer-dir",
        str(tokenizer_dir),
        "--run-dir",
        str(run_dir),
        "--nodes",
        str(topo.nnodes),
        "--gpus",
        str(spec.gpus),
        "--layout",
        layout,
        "--seed",
        str(spec.seed),
        "--max-steps",
        str(spec.max_steps),
        "--global-batch-size",
        str(spec.global_batch_size),
        "--micro-batch-size",
        str(spec.micro_batch_size),
        "--warmup-steps",
        str(spec.lr.warmup_steps),
        "--lr",
        repr(spec.lr.max),
        "--min-lr",
        repr(spec.lr.min),
        "--te",
        te,
        "--attention",
        attention,
    ]
    train += [f"--override={key}={json.dumps(value)}" for key, value in spec.overrides.items()]
    if spec.probe or spec.gpus < spec.reference_gpus:
        train.append("--probe")
    if models_file is not None:
        train += ["--models", str(models_file)]
    torchrun = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(topo.gpus_per_node)]
    if topo.slurm:
        return [
            "srun",
            f"--nodes={topo.nnodes}",
            "--ntasks-per-node=1",
            "--kill-on-bad-exit=1",
            *torchrun,
            "--nnodes",
            str(topo.nnodes),
            "--rdzv-id",
            str(topo.slurm_job_id),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            f"{topo.master_addr}:{topo.master_port}",
            *train,
        ]
    if topo.nnodes == 1:
        return [*torchrun, "--standalone", "--nnodes", "1", *train]
    return [
        *torchrun,
        "--nnodes",
        str(topo.nnodes),
        "--node-rank",
        str(topo.node_rank),
        "--master-addr",
        topo.master_addr,
        "--master-port",
        str(topo.master_port),
        *train,
    ]


def prepare(
    spec: ModelSpec,
    *,
    runs_dir: Path,
    data: DataChoice,
    models_file: Path | None = None,
    te: str = "auto",
    attention: str = "auto",
    env: Mapping[str, str] | None = None,
    prepare_data: bool = True,
) -> Plan:
    """Everything a run needs, decided before it starts; ``prepare_data=False`` (a dry run) builds nothing."""
    from qwen_acceptance.data import cache, sources

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
        prefix = cache.ensure_dataset(
            corpus,
            data.data_tokenizer or tokenizer_name,
            data.cache_dir or default_cache_dir(),
            append_eod=data.append_eod,
        ).prefix
    else:  # a dry run: nothing is built or downloaded, but a local corpus must be there
        name = data.corpus or spec.data.corpus
        if not name.startswith("hf://") and not sources.resolve_input(name).is_file():
            raise AcceptanceError(f"{name}: no such corpus file (models.yaml data.corpus, or --corpus)")
        prefix = Path(f"<{name} preprocessed at launch>")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = (runs_dir / spec.name / f"{stamp}-node{topo.node_rank}-{os.getpid()}").resolve()
    for again in itertools.count(2):  # the same model run twice by one process within a second
        if not run_dir.exists():
            break
        run_dir = run_dir.with_name(f"{stamp}-node{topo.node_rank}-{os.getpid()}-{again}")
    cmd = command(
        spec,
        topo,
        data_prefix=prefix,
        tokenizer_dir=tokenizer_dir,
        run_dir=run_dir,
        models_file=models_file,
        te=te,
        attention=attention,
    )
    return Plan(spec, topo, run_dir, run_dir / "train.log", prefix, tokenizer_dir, cmd)


def execute(
    p: Plan,
    *,
    limits: Limits = Limits(),
    progress: TextIO | None = None,
    watch: failfast.Watch | None = None,
    stop: threading.Event | None = None,
) -> Outcome:
    """Run the plan in a fresh run folder (the command beside the log, for rerunning by hand)."""
    p.run_dir.mkdir(parents=True, exist_ok=False)
    (p.run_dir / "command.sh").write_text("#!/usr/bin/env bash\n" + shlex.join(p.command) + "\n")
    return supervise(
        p.command,
        log_path=p.log_path,
        name=p.spec.name,
        total_steps=p.spec.max_steps,
        limits=limits,
        progress=progress,
        watch=watch,
        stop=stop,
    )


def describe(p: Plan, te: str, attention: str) -> dict[str, Any]:
    """What ``launch --dry-run`` prints: the command, the topology, the matrix values and, where NeMo imports,
    the recipe NeMo resolves for them."""
    spec, topo = p.spec, p.topology
    config: dict[str, Any] = {
        "command": p.command,
        "run_dir": str(p.run_dir),
        "topology": {
            "nodes": topo.nnodes,
            "node_rank": topo.node_rank,
            "gpus_per_node": topo.gpus_per_node,
            "master": f"{topo.master_addr}:{topo.master_port}",
            "slurm": topo.slurm,
        },
        "model": {
            "name": spec.name,
            "recipe": spec.recipe,
            "gpus": spec.gpus,
            "layout": spec.layout.describe(),
            "global_batch_size": spec.global_batch_size,
            "micro_batch_size": spec.micro_batch_size,
            "seq_length": spec.seq_length,
            "max_steps": spec.max_steps,
            "seed": spec.seed,
            "lr": {"max": spec.lr.max, "min": spec.lr.min, "warmup_steps": spec.lr.warmup_steps},
        },
        "data": {"prefix": str(p.data_prefix), "tokenizer": str(p.tokenizer_dir)},
    }
    try:
        use_te = recipes.resolve_te(te)
        recipe = recipes.build(
            spec,
            recipes.RunPaths(p.data_prefix, p.tokenizer_dir, p.run_dir),
            nodes=topo.nnodes,
            te=use_te,
            attention=attention,
        )
        config["nemo_recipe"] = {
            "transformer_engine": use_te,
            "attention": recipes.resolve_attention(attention, use_te),
            **recipes.resolved(recipe),
        }
    except ImportError as exc:
        config["nemo_recipe"] = f"not resolved: NeMo is not importable here ({exc.name})"
    return config
