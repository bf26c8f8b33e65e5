"""The launcher: topology from the reference's variables or Slurm, the exact torchrun command, and the live monitor
against real processes (NaN, hang, crash, Ctrl-C, fail-fast), which must leave no process of the run behind."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwen_acceptance import baselines, failfast, launch, models
from qwen_acceptance.errors import AcceptanceError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DENSE = ROOT / "fixtures/nemo25/nemo25-h200-tiny-qwen3-dense-60steps.log"
SMOKE = ROOT / "fixtures/logs/smoke_qwen3.log"  # the run smoke_qwen3's baseline was recorded from
HONEST = ROOT / "fixtures/smoke-runs/smoke_qwen3-h200x1-seed4321.log"  # the honest rerun furthest from it
MATRIX = models.load_matrix()


def replay(*args, log=DENSE):
    return [sys.executable, str(HERE / "replay_nemo.py"), str(log), *map(str, args)]


def smoke_watch():
    """Fail-fast against smoke_qwen3's baseline in the repository's baselines.yaml."""
    return failfast.Watch(baselines.load(ROOT / "baselines.yaml")["smoke_qwen3"], MATRIX["smoke_qwen3"], stop=True)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def cmd_for(spec, env):
    topo = launch.topology_from_env(spec, env)
    return topo, launch.command(spec, topo, data_prefix=Path("/d/p"), tokenizer_dir=Path("/t"),
                                run_dir=Path("/r"), python="python")


def test_single_node_command():
    topo, cmd = cmd_for(MATRIX["qwen3_8b"], {})
    assert (topo.nnodes, topo.gpus_per_node, topo.judges) == (1, 8, True)
    assert cmd[:8] == ["python", "-m", "torch.distributed.run", "--nproc-per-node", "8", "--standalone",
                       "--nnodes", "1"]
    train = cmd[cmd.index("qwen_acceptance.train") + 1:]
    assert train[:3] == ["qwen3_8b", "--data-prefix", "/d/p"]
    assert train[train.index("--layout") + 1] == "tp=4,pp=1,cp=1,ep=1,etp=1,sp=false"
    assert train[train.index("--global-batch-size") + 1] == "128" and train[train.index("--seed") + 1] == "1234"


def test_multi_node_from_reference_variables():
    env = {"NODE_COUNT": "4", "NODE_RANK": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500",
           "GPUS_PER_NODE": "8"}
    topo, cmd = cmd_for(MATRIX["qwen2_72b"], env)
    assert (topo.nnodes, topo.node_rank, topo.world_size, topo.judges) == (4, 2, 32, False)
    assert cmd[5:15] == ["--nnodes", "4", "--node-rank", "2", "--master-addr", "10.0.0.1", "--master-port", "29500",
                         "-m", "qwen_acceptance.train"]
    assert cmd[cmd.index("--nodes") + 1] == "4"
    assert launch.topology_from_env(MATRIX["qwen2_72b"], {**env, "NNODES": "4", "NODE_RANK": "0"}).judges


def test_slurm_uses_srun_across_the_allocation():
    env = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "4", "SLURM_GPUS_ON_NODE": "8", "MASTER_ADDR": "node01",
           "MASTER_PORT": "6000"}
    topo, cmd = cmd_for(MATRIX["qwen25_72b"], env)
    assert topo.slurm and topo.judges
    assert cmd[:4] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--rdzv-endpoint" in cmd and cmd[cmd.index("--rdzv-endpoint") + 1] == "node01:6000"
    assert cmd[cmd.index("--rdzv-id") + 1] == "77"


def test_slurm_without_a_master_is_a_clear_error():
    env = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "4", "SLURM_JOB_NODELIST": "node[01-04]", "PATH": "/nonexistent"}
    with pytest.raises(AcceptanceError, match=r"Slurm: cannot find the first host of 'node\[01-04\]'; set MASTER_ADDR"):
        launch.topology_from_env(MATRIX["qwen25_72b"], env)


@pytest.mark.parametrize("env, message", [
    ({"NNODES": "2", "GPUS_PER_NODE": "8"}, r"qwen3_8b needs 8 GPUs; the launch variables give 2 node\(s\) × 8"),
    ({"NNODES": "1", "NODE_RANK": "3"}, r"NODE_RANK=3 is outside 0..0"),
    ({"GPUS_PER_NODE": "eight"}, r"GPUS_PER_NODE='eight': expected an integer"),
])
def test_bad_launch_variables(env, message):
    with pytest.raises(AcceptanceError, match=message):
        launch.topology_from_env(MATRIX["qwen3_8b"], env)


def test_clean_run_is_parsed_live(tmp_path):
    seen = []
    out = launch.run(replay(), log_path=tmp_path / "train.log", name="t", total_steps=60, on_step=seen.append)
    assert out.ok and out.returncode == 0 and sorted(out.log.steps) == list(range(60))
    assert [r.step for r in seen] == list(range(60))
    assert (tmp_path / "train.log").read_text().startswith("# ")  # the command heads the log


def test_nan_loss_stops_the_run_early(tmp_path):
    out = launch.run(replay("--nan-at-step", 5, "--step-delay", 0.05), log_path=tmp_path / "l", name="t",
                     total_steps=60)
    assert not out.ok and out.abort_reason == "loss is nan at step 5"
    assert max(out.log.steps) < 59  # stopped, not run to the end
    assert "run stopped: loss is nan at step 5" in (tmp_path / "l").read_text()


def test_hang_is_detected(tmp_path):
    out = launch.run(replay("--stop-after-step", 3, "--then-sleep", 60), log_path=tmp_path / "l", name="t",
                     total_steps=60, limits=launch.Limits(hang=1.5))
    assert out.abort_reason == "no new step for 2 s (hung?)" and max(out.log.steps) == 3


def test_startup_timeout_and_wall_limit(tmp_path):
    out = launch.run([sys.executable, "-c", "import time; print('importing', flush=True); time.sleep(60)"],
                     log_path=tmp_path / "a", name="t", total_steps=60, limits=launch.Limits(startup=1.0))
    assert out.abort_reason == "no training step within 1 s of the start" and out.tail == ["importing"]
    out = launch.run(replay("--step-delay", 0.2), log_path=tmp_path / "b", name="t", total_steps=60,
                     limits=launch.Limits(wall=1.0))
    assert out.abort_reason == "wall-clock limit of 1 s reached"


def test_crash_reports_exit_code_and_last_lines(tmp_path):
    out = launch.run(replay("--stop-after-step", 10, "--exit-code", 3), log_path=tmp_path / "l", name="t",
                     total_steps=60)
    assert out.returncode == 3 and not out.ok
    message = out.failure()
    assert message.startswith("training exited with code 3; log: ")
    assert "RuntimeError: CUDA error: an illegal memory access" in message


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is dead too
        return handle.read().split(")")[1].split()[0] != "Z"


def test_abort_leaves_no_process_behind(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    out = launch.run(replay("--nan-at-step", 3, "--step-delay", 0.05, "--then-sleep", 60, "--grandchild-pidfile",
                            pidfile), log_path=tmp_path / "l", name="t", total_steps=60)
    assert out.abort_reason
    assert not _alive(int(pidfile.read_text()))


def test_fail_fast_stops_a_broken_replay(tmp_path):
    """The smoke baseline's own log with every loss doubled (derived: no broken run is recorded yet) is stopped
    when its third point in a row (steps 20..29) is past the stop line, and its whole process group ends."""
    pidfile = tmp_path / "grandchild.pid"
    out = launch.run(replay("--scale-loss", 2, "--step-delay", 0.02, "--grandchild-pidfile", pidfile, log=SMOKE),
                     log_path=tmp_path / "l", name="smoke_qwen3", total_steps=200, watch=smoke_watch())
    assert out.abort_reason == ("fail-fast: the loss curve was beyond ±15% of the baseline's for 3 points in a row; "
                                "at step 20 (mean of steps 20..29) the run's 18.04 against the baseline's 9.022 "
                                "(+100.0%; band ±10%)")
    assert 29 <= max(out.log.steps) < 199  # stopped, not run to the end
    assert f"run stopped: {out.abort_reason}" in (tmp_path / "l").read_text()
    assert not _alive(int(pidfile.read_text()))


def test_an_honest_replay_runs_to_the_end_on_track(tmp_path):
    terminal = _Terminal()
    out = launch.run(replay(log=HONEST), log_path=tmp_path / "l", name="smoke_qwen3", total_steps=200,
                     watch=smoke_watch(), progress=terminal)
    assert out.ok and sorted(out.log.steps) == list(range(200))
    last_line = terminal.getvalue().split("\r\x1b[2K")[-1]
    assert last_line.startswith("[smoke_qwen3] step 200/200  loss 2.62  ")
    assert last_line.endswith("  | curve @190: 3.017 vs baseline 2.843 (+6.1%) on track\n")


def test_the_time_limit_still_wins_over_fail_fast(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    out = launch.run(replay("--scale-loss", 2, "--step-delay", 0.2, "--grandchild-pidfile", pidfile, log=SMOKE),
                     log_path=tmp_path / "l", name="smoke_qwen3", total_steps=200, limits=launch.Limits(wall=1.0),
                     watch=smoke_watch())
    assert out.abort_reason == "wall-clock limit of 1 s reached" and max(out.log.steps) < 29
    assert not _alive(int(pidfile.read_text()))


@pytest.mark.parametrize("fail_fast", [False, True], ids=["plain", "fail-fast-watching-a-broken-run"])
def test_ctrl_c_ends_the_whole_group(tmp_path, fail_fast):
    """Ctrl-C in the launcher (a real process) must end torchrun's stand-in and its child, fail-fast or not."""
    pidfile = tmp_path / "grandchild.pid"
    cmd = replay("--step-delay", 0.5, "--grandchild-pidfile", pidfile,
                 *(("--scale-loss", 2) if fail_fast else ()), log=SMOKE if fail_fast else DENSE)
    script = (f"import sys; from pathlib import Path; from qwen_acceptance import launch; "
              f"sys.path.insert(0, {str(HERE)!r}); from test_launch import smoke_watch; "
              f"launch.run({cmd!r}, log_path=Path({str(tmp_path / 'l')!r}), name='t', total_steps=60, "
              f"watch=smoke_watch() if {fail_fast} else None)")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in err
    assert not _alive(int(pidfile.read_text()))
    assert "run stopped: interrupted (Ctrl-C)" in (tmp_path / "l").read_text()
