"""The launch scripts: syntax, usage errors, and the torchrun commands they compose (DRY_RUN=1; nothing is trained).

The SLURM script runs against stand-in ``scontrol``/``srun`` executables that print what they were given.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "scripts" / "launch"
SCRIPTS = ("common.sh", "single_node.sh", "multi_node.sh", "slurm.sbatch")
LAUNCH_ENV = ("RUN_DIR", "NNODES", "MASTER_ADDR", "MASTER_PORT", "RDZV_ID", "OUTPUT_ROOT", "DRY_RUN", "TORCHRUN")


def run(script: str, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV and not k.startswith("SLURM_")}
    return subprocess.run(["bash", str(LAUNCH / script), *args], cwd=cwd, env={**base, **env}, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("script", SCRIPTS)
def test_syntax(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(LAUNCH / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    # The launch scripts, the installer, the study script and CI's own script.
    paths = [*(LAUNCH / s for s in SCRIPTS), ROOT / "scripts" / "install.sh", ROOT / "scripts" / "synthetic_study.sh",
             ROOT / ".ci" / "run"]
    result = subprocess.run(["shellcheck", "-x", *map(str, paths)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("args", [(), ("2",), ("two", "experiment=x"), ("0", "experiment=x"), ("2", "train.seed=1")])
def test_single_node_usage(args: tuple[str, ...]) -> None:
    result = run("single_node.sh", *args)
    assert result.returncode == 2
    assert "usage: bash scripts/launch/single_node.sh <num_gpus> experiment=<name>" in result.stderr
    assert "command:" not in result.stdout


def test_help_exits_zero() -> None:
    for script in ("single_node.sh", "multi_node.sh", "slurm.sbatch"):
        result = run(script, "--help")
        assert result.returncode == 0 and "usage:" in result.stderr, script


def test_single_node_command_decides_the_run_dir_once(tmp_path: Path) -> None:
    result = run("single_node.sh", "4", "experiment=ablation/no_bridge", "train.max_steps=3", cwd=tmp_path,
                 DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    run_dir = re.search(r"^run directory: (\S+)$", result.stdout, re.M).group(1)
    assert re.fullmatch(r"runs/ablation/no_bridge/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", run_dir)
    command = result.stdout.split("command: ", 1)[1].split()
    assert command == ["torchrun", "--standalone", "--nproc_per_node", "4", "scripts/train.py",
                       "experiment=ablation/no_bridge", "train.max_steps=3", f"hydra.run.dir={run_dir}"]


def test_single_node_env(tmp_path: Path) -> None:
    fake = tmp_path / "torchrun"
    fake.write_text('#!/usr/bin/env bash\necho "OMP=$OMP_NUM_THREADS TOK=$TOKENIZERS_PARALLELISM PWD=$PWD"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = run("single_node.sh", "1", "experiment=x", RUN_DIR="runs/x/mine", TORCHRUN=str(fake))
    assert result.returncode == 0, result.stderr
    assert "hydra.run.dir=runs/x/mine" in result.stdout
    assert f"OMP={len(os.sched_getaffinity(0))} TOK=false PWD={ROOT}" in result.stdout  # nproc: usable cores


def test_single_node_rejects_hydra_run_dir() -> None:
    result = run("single_node.sh", "2", "experiment=x", "hydra.run.dir=elsewhere", DRY_RUN="1")
    assert result.returncode == 2 and "RUN_DIR" in result.stderr


def test_missing_torchrun_is_named() -> None:
    result = run("single_node.sh", "2", "experiment=x", TORCHRUN="/nonexistent/torchrun")
    assert result.returncode == 2 and "TORCHRUN=" in result.stderr


def test_multi_node_requires_run_dir() -> None:
    result = run("multi_node.sh", "8", "experiment=x", NNODES="2", MASTER_ADDR="node0", DRY_RUN="1")
    assert result.returncode == 2
    assert "RUN_DIR is not set" in result.stderr and "shared filesystem" in result.stderr


@pytest.mark.parametrize("missing", ["NNODES", "MASTER_ADDR"])
def test_multi_node_requires_rendezvous(missing: str) -> None:
    env = {"RUN_DIR": "/shared/r", "NNODES": "2", "MASTER_ADDR": "node0", "DRY_RUN": "1"}
    del env[missing]
    result = run("multi_node.sh", "8", **env)
    assert result.returncode == 2 and f"{missing} is not set" in result.stderr


def test_multi_node_usage() -> None:
    result = run("multi_node.sh", RUN_DIR="/shared/r")
    assert result.returncode == 2 and "usage:" in result.stderr


def test_multi_node_command() -> None:
    env = {"RUN_DIR": "/shared/runs/x/1", "NNODES": "2", "MASTER_ADDR": "node0", "DRY_RUN": "1"}
    result = run("multi_node.sh", "8", "experiment=x", **env)
    assert result.returncode == 0, result.stderr
    command = result.stdout.split("command: ", 1)[1].split()
    rdzv_id = command[command.index("--rdzv_id") + 1]
    assert command == ["torchrun", "--nnodes", "2", "--nproc_per_node", "8", "--rdzv_backend", "c10d",
                       "--rdzv_endpoint", "node0:29500", "--rdzv_id", rdzv_id, "scripts/train.py", "experiment=x",
                       "hydra.run.dir=/shared/runs/x/1"]
    again = run("multi_node.sh", "8", "experiment=x", **env).stdout.split("command: ", 1)[1].split()
    assert again == command  # every node derives the same rendezvous id


def test_run_dir_with_spaces_is_rejected() -> None:
    result = run("multi_node.sh", "8", RUN_DIR="/shared/my runs", NNODES="2", MASTER_ADDR="n0", DRY_RUN="1")
    assert result.returncode == 2 and "may only contain" in result.stderr


def test_slurm_outside_a_job() -> None:
    result = run("slurm.sbatch", "experiment=x")
    assert result.returncode == 2 and "SLURM_JOB_ID" in result.stderr


def test_slurm_job_runs_multi_node_once_per_node(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "scontrol": 'printf "gpu-a01\\ngpu-a02\\n"',
        # srun: report the environment every node inherits, then run the node command as one node would (dry run)
        "srun": 'echo "srun $* | $RUN_DIR $MASTER_ADDR $MASTER_PORT $NNODES"; shift 5; DRY_RUN=1 "$@"',
    }
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "12345", "SLURM_SUBMIT_DIR": str(ROOT),
           "SLURM_JOB_NODELIST": "gpu-a[01-02]", "SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "8",
           "OUTPUT_ROOT": str(tmp_path / "runs")}
    result = run("slurm.sbatch", "experiment=x", "train.seed=1", cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    srun = re.search(r"^srun (.*) \| (\S+) (\S+) (\S+) (\S+)$", result.stdout, re.M)
    assert srun is not None, result.stdout + result.stderr
    assert srun.group(1).startswith("--nodes 2 --ntasks-per-node 1 --kill-on-bad-exit=1 bash ")
    assert srun.group(1).endswith("scripts/launch/multi_node.sh 8 experiment=x train.seed=1")
    run_dir, master_addr, master_port, nnodes = srun.groups()[1:]
    assert run_dir == str(tmp_path / "runs" / "x" / "job12345")
    assert (master_addr, master_port, nnodes) == ("gpu-a01", str(20000 + 12345), "2")
    assert f"--rdzv_endpoint gpu-a01:{master_port} --rdzv_id 12345" in result.stdout
    assert f"hydra.run.dir={run_dir}" in result.stdout
    assert "train.resume" not in result.stdout

    requeued = run("slurm.sbatch", "experiment=x", "train.seed=1", cwd=tmp_path, **env, SLURM_RESTART_COUNT="1")
    assert requeued.returncode == 0, requeued.stderr
    assert "multi_node.sh 8 experiment=x train.seed=1 train.resume=true" in requeued.stdout
    assert f"hydra.run.dir={run_dir}" in requeued.stdout  # the same run directory: the resume finds it
