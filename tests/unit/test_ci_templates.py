"""The GPU CI templates and every shell script are linted: the workflow against GitHub's workflow schema (the one
check-jsonschema ships), the scripts with shellcheck."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPTS = [
    ROOT / ".ci/run",
    *sorted((ROOT / "scripts").glob("*.sh")),
    *sorted((ROOT / "benchmarks").glob("*.sh")),
    *sorted((ROOT / "ci/slurm").glob("*.sbatch")),
]


def test_workflow_matches_githubs_schema():
    out = subprocess.run(
        [
            BIN / "check-jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *sorted((ROOT / ".github/workflows").glob("*.yml")),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  a:\n    runs_on: gpu\n    steps: []\n")
    out = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", broken],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "'runs-on' is a required property" in out.stdout


def test_workflow_runs_smoke_on_push_and_reference_models_nightly():
    workflow = yaml.safe_load((ROOT / ".github/workflows/gpu-acceptance.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert {"push", "pull_request", "schedule", "workflow_dispatch"} <= set(triggers)
    jobs = workflow["jobs"]
    assert (
        jobs["smoke"]["container"]["image"] == jobs["nightly"]["container"]["image"] == "nvcr.io/nvidia/nemo:25.09.00"
    )
    assert "-m smoke" in " ".join(s.get("run", "") for s in jobs["smoke"]["steps"])
    assert all(
        any(s.get("uses", "").startswith("actions/upload-artifact") for s in job["steps"]) for job in jobs.values()
    )


def test_the_fault_matrix_runs_weekly_and_the_nightly_job_only_on_its_own_schedule():
    workflow = yaml.safe_load((ROOT / ".github/workflows/gpu-acceptance.yml").read_text())
    crons = [c["cron"] for c in workflow[True]["schedule"]]
    jobs = workflow["jobs"]
    nightly, weekly = (next(c for c in crons if f"'{c}'" in jobs[j]["if"]) for j in ("nightly", "sensitivity"))
    assert nightly != weekly and f"'{weekly}'" not in jobs["nightly"]["if"]
    run = " ".join(s.get("run", "") for s in jobs["sensitivity"]["steps"])
    assert 'sensitivity "$model" --jobs 4' in run and "--bisect-lr 3" in run


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_pass_shellcheck(script):
    # -x from the repository root: sourced scripts (scripts/device-env.sh) are checked where they are used too
    out = subprocess.run(
        [BIN / "shellcheck", "-x", "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout


def test_slurm_script_uses_the_reference_launch_variables():
    text = (ROOT / "ci/slurm/qwen-72b.sbatch").read_text()
    for name in ("GPUS_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        assert f"{name}=" in text
    assert "#SBATCH --nodes=4" in text and "#SBATCH --gpus-per-node=8" in text
