"""The launcher: topology from the reference's variables or Slurm, the exact torchrun command, and the live monitor
against real processes (NaN, hang, crash, Ctrl-C, fail-fast), which must leave no process of the run behind."""

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import alive

from qwen_acceptance import models
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import baselines, failfast
from qwen_acceptance.run import monitor, plan, topology

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
    topo = topology.topology_from_env(spec, env)
    return topo, plan.command(
        spec, topo, data_prefix=Path("/d/p"), tokenizer_dir=Path("/t"), run_dir=Path("/r"), python="python"
    )


def test_single_node_command():
    topo, cmd = cmd_for(MATRIX["qwen3_8b"], {})
    assert (topo.nnodes, topo.gpus_per_node, topo.judges) == (1, 8, True)
    assert cmd[:8] == [
        "python",
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "8",
        "--standalone",
        "--nnodes",
        "1",
    ]
    train = cmd[cmd.index("qwen_acceptance.train") + 1 :]
    assert train[:3] == ["qwen3_8b", "--data-prefix", "/d/p"]
    assert train[train.index("--layout") + 1] == "tp=4,pp=1,cp=1,ep=1,etp=1,sp=false"
    assert train[train.index("--global-batch-size") + 1] == "128" and train[train.index("--seed") + 1] == "1234"


def test_multi_node_from_reference_variables():
    env = {"NODE_COUNT": "4", "NODE_RANK": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "GPUS_PER_NODE": "8"}
    topo, cmd = cmd_for(MATRIX["qwen2_72b"], env)
    assert (topo.nnodes, topo.node_rank, topo.world_size, topo.judges) == (4, 2, 32, False)
    assert cmd[5:15] == [
        "--nnodes",
        "4",
        "--node-rank",
        "2",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29500",
        "-m",
        "qwen_acceptance.train",
    ]
    assert cmd[cmd.index("--nodes") + 1] == "4"
    assert topology.topology_from_env(MATRIX["qwen2_72b"], {**env, "NNODES": "4", "NODE_RANK": "0"}).judges


def test_slurm_uses_srun_across_the_allocation():
    env = {
        "SLURM_JOB_ID": "77",
        "SLURM_NNODES": "4",
        "SLURM_GPUS_ON_NODE": "8",
        "MASTER_ADDR": "node01",
        "MASTER_PORT": "6000",
    }
    topo, cmd = cmd_for(MATRIX["qwen25_72b"], env)
    assert topo.slurm and topo.judges
    assert cmd[:4] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--rdzv-endpoint" in cmd and cmd[cmd.index("--rdzv-endpoint") + 1] == "node01:6000"
    assert cmd[cmd.index("--rdzv-id") + 1] == "77"


def test_slurm_without_a_master_is_a_clear_error():
    env = {"SLURM_JOB_ID": "77", "SLURM_NNODES": "4", "SLURM_JOB_NODELIST": "node[01-04]", "PATH": "/nonexistent"}
    with pytest.raises(AcceptanceError, match=r"Slurm: cannot find the first host of 'node\[01-04\]'; set MASTER_ADDR"):
        topology.topology_from_env(MATRIX["qwen25_72b"], env)


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"NNODES": "2", "GPUS_PER_NODE": "8", "MASTER_ADDR": "h0"},
            r"qwen3_8b needs 8 GPUs; the launch variables give 2 node\(s\) × 8",
        ),
        ({"MASTER_ADDR": " "}, r"MASTER_ADDR is set but empty: name the host of node rank 0"),
        ({"MASTER_PORT": "70000"}, r"MASTER_PORT=70000: a TCP port is 1..65535"),
        ({"MASTER_PORT": "-1"}, r"MASTER_PORT=-1: a TCP port is 1..65535"),
        ({"NNODES": "2", "GPUS_PER_NODE": "4"}, r"NNODES=2 without MASTER_ADDR: every node would wait for itself"),
        ({"NNODES": "1", "NODE_RANK": "3"}, r"NODE_RANK=3 is outside 0..0"),
        ({"GPUS_PER_NODE": "eight"}, r"GPUS_PER_NODE='eight': expected an integer"),
    ],
)
def test_bad_launch_variables(env, message):
    with pytest.raises(AcceptanceError, match=message):
        topology.topology_from_env(MATRIX["qwen3_8b"], env)


def _lines(log, first=0, last=None):
    lines = [line for line in log.read_text().splitlines(keepends=True) if "Training epoch" in line]
    return lines[first:last]


def test_monitor_rules_without_a_process():
    """The stop rules, fed lines and times by hand: NaN, startup, hang and wall limits; the first reason stays."""
    m = monitor.Monitor("fed", limits=monitor.Limits(startup=10, hang=5, wall=100), start=0.0)
    assert m.feed("importing nemo\n", 1.0) is None and m.check(9.0) is None
    assert m.check(10.5) == "no training step within 10 s of the start"
    m = monitor.Monitor("fed", limits=monitor.Limits(startup=10, hang=5, wall=100), start=0.0)
    for now, line in enumerate(_lines(DENSE, 0, 3), start=2):
        assert m.feed(line, float(now)).step == now - 2
    assert m.check(8.0) is None and m.check(9.5) == "no new step for 5 s (hung?)"
    assert m.check(200.0) == "no new step for 5 s (hung?)"  # the first reason is the one reported
    m = monitor.Monitor("fed", limits=monitor.Limits(startup=None, hang=None, wall=100), start=0.0)
    assert m.check(100.5) == "wall-clock limit of 100 s reached"


def test_monitor_stops_on_a_non_finite_loss_and_keeps_the_tail():
    from nemolog import with_loss

    m = monitor.Monitor("fed", start=0.0)
    good, bad = _lines(DENSE, 0, 2)
    m.feed(good, 1.0)
    m.feed(with_loss(bad, float("nan")), 2.0)
    assert m.abort == "loss is nan at step 1" and m.check(3.0) == "loss is nan at step 1"
    assert m.tail[-1].startswith("Training epoch 0, iteration 1/") and sorted(m.log.steps) == [0, 1]


def test_monitor_fail_fast_from_fed_lines():
    """The smoke baseline's own log, its loss doubled: stopped at the third point past the stop line."""
    from nemolog import scale_loss

    m = monitor.Monitor("fed", watch=smoke_watch(), start=0.0)
    stopped_at = None
    for now, line in enumerate(scale_loss(_lines(SMOKE), 2.0)):
        record = m.feed(line, float(now))
        if m.abort and stopped_at is None:
            stopped_at = record.step
    assert stopped_at == 29 and m.abort.startswith("fail-fast: the loss curve was beyond ±15% of the baseline's")
    assert m.status().startswith("curve @20: 18.04 vs baseline 9.022 (+100.0%) outside band (3 of 3 past ±15%)")


def test_clean_run_is_parsed_live(tmp_path):
    seen = []
    out = monitor.supervise(replay(), log_path=tmp_path / "train.log", name="t", total_steps=60, on_step=seen.append)
    assert out.ok and out.returncode == 0 and sorted(out.log.steps) == list(range(60))
    assert [r.step for r in seen] == list(range(60))
    assert (tmp_path / "train.log").read_text().startswith("# ")  # the command heads the log


def test_nan_loss_stops_the_run_early(tmp_path):
    out = monitor.supervise(
        replay("--nan-at-step", 5, "--step-delay", 0.05), log_path=tmp_path / "l", name="t", total_steps=60
    )
    assert not out.ok and out.abort_reason == "loss is nan at step 5"
    assert max(out.log.steps) < 59  # stopped, not run to the end
    assert "run stopped: loss is nan at step 5" in (tmp_path / "l").read_text()


def test_hang_is_detected(tmp_path):
    out = monitor.supervise(
        replay("--stop-after-step", 3, "--then-sleep", 60),
        log_path=tmp_path / "l",
        name="t",
        total_steps=60,
        limits=monitor.Limits(hang=1.5),
    )
    assert out.abort_reason == "no new step for 2 s (hung?)" and max(out.log.steps) == 3


def test_startup_timeout_and_wall_limit(tmp_path):
    out = monitor.supervise(
        [sys.executable, "-c", "import time; print('importing', flush=True); time.sleep(60)"],
        log_path=tmp_path / "a",
        name="t",
        total_steps=60,
        limits=monitor.Limits(startup=1.0),
    )
    assert out.abort_reason == "no training step within 1 s of the start" and out.tail == ["importing"]
    out = monitor.supervise(
        replay("--step-delay", 0.2), log_path=tmp_path / "b", name="t", total_steps=60, limits=monitor.Limits(wall=1.0)
    )
    assert out.abort_reason == "wall-clock limit of 1 s reached"


def test_crash_reports_exit_code_and_last_lines(tmp_path):
    out = monitor.supervise(
        replay("--stop-after-step", 10, "--exit-code", 3), log_path=tmp_path / "l", name="t", total_steps=60
    )
    assert out.returncode == 3 and not out.ok
    message = out.failure()
    assert message.startswith("training exited with code 3; log: ")
    assert "RuntimeError: CUDA error: an illegal memory access" in message


def test_abort_leaves_no_process_behind(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    out = monitor.supervise(
        replay("--nan-at-step", 3, "--step-delay", 0.05, "--then-sleep", 60, "--grandchild-pidfile", pidfile),
        log_path=tmp_path / "l",
        name="t",
        total_steps=60,
    )
    assert out.abort_reason
    assert not alive(int(pidfile.read_text()))


def test_fail_fast_stops_a_broken_replay(tmp_path):
    """The smoke baseline's own log with every loss doubled (derived: no broken run is recorded yet) is stopped
    when its third point in a row (steps 20..29) is past the stop line, and its whole process group ends."""
    pidfile = tmp_path / "grandchild.pid"
    out = monitor.supervise(
        replay("--scale-loss", 2, "--step-delay", 0.02, "--grandchild-pidfile", pidfile, log=SMOKE),
        log_path=tmp_path / "l",
        name="smoke_qwen3",
        total_steps=200,
        watch=smoke_watch(),
    )
    assert out.abort_reason == (
        "fail-fast: the loss curve was beyond ±15% of the baseline's for 3 points in a row; "
        "at step 20 (mean of steps 20..29) the run's 18.04 against the baseline's 9.022 "
        "(+100.0%; band ±10%)"
    )
    assert 29 <= max(out.log.steps) < 199  # stopped, not run to the end
    assert f"run stopped: {out.abort_reason}" in (tmp_path / "l").read_text()
    assert not alive(int(pidfile.read_text()))


def test_an_honest_replay_runs_to_the_end_on_track(tmp_path):
    terminal = _Terminal()
    out = monitor.supervise(
        replay(log=HONEST),
        log_path=tmp_path / "l",
        name="smoke_qwen3",
        total_steps=200,
        watch=smoke_watch(),
        progress=terminal,
    )
    assert out.ok and sorted(out.log.steps) == list(range(200))
    last_line = terminal.getvalue().split("\r\x1b[2K")[-1]
    assert last_line.startswith("[smoke_qwen3] step 200/200  loss 2.62  ")
    assert last_line.endswith("  | curve @190: 3.017 vs baseline 2.843 (+6.1%) on track\n")


def test_the_time_limit_still_wins_over_fail_fast(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    out = monitor.supervise(
        replay("--scale-loss", 2, "--step-delay", 0.2, "--grandchild-pidfile", pidfile, log=SMOKE),
        log_path=tmp_path / "l",
        name="smoke_qwen3",
        total_steps=200,
        limits=monitor.Limits(wall=1.0),
        watch=smoke_watch(),
    )
    assert out.abort_reason == "wall-clock limit of 1 s reached" and max(out.log.steps) < 29
    assert not alive(int(pidfile.read_text()))


@pytest.mark.parametrize("fail_fast", [False, True], ids=["plain", "fail-fast-watching-a-broken-run"])
def test_ctrl_c_ends_the_whole_group(tmp_path, fail_fast):
    """Ctrl-C in the launcher (a real process) must end torchrun's stand-in and its child, fail-fast or not."""
    pidfile = tmp_path / "grandchild.pid"
    cmd = replay(
        "--step-delay",
        0.5,
        "--grandchild-pidfile",
        pidfile,
        *(("--scale-loss", 2) if fail_fast else ()),
        log=SMOKE if fail_fast else DENSE,
    )
    script = (
        f"import sys; from pathlib import Path; from qwen_acceptance.run import monitor; "
        f"sys.path.insert(0, {str(HERE)!r}); from test_launch import smoke_watch; "
        f"monitor.supervise({cmd!r}, log_path=Path({str(tmp_path / 'l')!r}), name='t', total_steps=60, "
        f"watch=smoke_watch() if {fail_fast} else None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in err
    assert not alive(int(pidfile.read_text()))
    assert "run stopped: interrupted (Ctrl-C)" in (tmp_path / "l").read_text()


def test_the_same_model_planned_twice_in_one_second_gets_two_run_folders(tmp_path, monkeypatch):
    """A bisection or a test may run one variant twice within a second from one process: the second run must not
    find the first one's folder (execute refuses to reuse one)."""
    monkeypatch.setattr(plan.time, "strftime", lambda *_: "20261204-000000")
    spec = MATRIX["smoke_qwen3"]
    first = plan.prepare(spec, runs_dir=tmp_path, data=plan.DataChoice(), prepare_data=False)
    first.run_dir.mkdir(parents=True)
    second = plan.prepare(spec, runs_dir=tmp_path, data=plan.DataChoice(), prepare_data=False)
    assert second.run_dir.parent == first.run_dir.parent and second.run_dir.name == first.run_dir.name + "-2"
