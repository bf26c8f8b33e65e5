"""Where a run's ranks live: the reference's launch variables (NNODES or NODE_COUNT, NODE_RANK, MASTER_ADDR,
MASTER_PORT, GPUS_PER_NODE) with pytest started on every node, or Slurm, where ``srun`` starts one torchrun per
node; and how many GPUs this machine has."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.models import ModelSpec


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
    if not 1 <= port <= 65535:
        raise AcceptanceError(f"environment variable MASTER_PORT={port}: a TCP port is 1..65535")
    if "MASTER_ADDR" in env and not env["MASTER_ADDR"].strip():
        raise AcceptanceError("environment variable MASTER_ADDR is set but empty: name the host of node rank 0")
    if env.get("SLURM_JOB_ID") and _int(env, "SLURM_NNODES", 1) > 1 and not env.get("SLURM_STEP_ID"):
        nnodes = _int(env, "SLURM_NNODES", 1)
        per_node = _int(env, "GPUS_PER_NODE", _int(env, "SLURM_GPUS_ON_NODE", spec.gpus // nnodes))
        topo = Topology(nnodes, 0, per_node, _slurm_master(env), port, slurm=True, slurm_job_id=env["SLURM_JOB_ID"])
    else:
        nnodes = _int(env, "NNODES", _int(env, "NODE_COUNT", 1))
        if nnodes > 1 and not env.get("MASTER_ADDR"):
            raise AcceptanceError(
                f"NNODES={nnodes} without MASTER_ADDR: every node would wait for itself at "
                "127.0.0.1; set MASTER_ADDR to the host of node rank 0 on each node"
            )
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


def require_gpus(spec: ModelSpec, topo: Topology) -> None:
    """Refuse at once where this node lacks the GPUs the run needs (rather than after preprocessing and
    torchrun's start)."""
    here = visible_gpus()
    if here < topo.gpus_per_node:
        raise AcceptanceError(
            f"{spec.name}: needs {topo.gpus_per_node} GPU(s) on this node, and nvidia-smi sees {here} "
            "(--dry-run shows the plan without them)"
        )


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
