"""One training across nodes: a launcher agent per node meeting at a rendezvous (torchrun's c10d,
or the deepspeed launcher per node from a hostfile), on CPU with gloo. Two agents on 127.0.0.1
stand for two nodes and follow one process's loss curve; in a SLURM job of two nodes
(tests/slurm_cluster.py, where SLURM is installed) the pipeline's train stage starts them with
srun, one per node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests import test_trainer_distributed as distributed
from tests.conftest import ROOT
from tests.slurm_cluster import slurm_cluster  # noqa: F401  (a fixture)
from tests.test_trainer import ZERO2
from wcse.train.launch import Rendezvous, agent_command, launch_commands, run_training
from wcse.train.spec import TrainSpec

# The distributed trainer tests' fixtures: one OpenMP thread per process, the tiny base model and its data.
one_thread_per_process, toy, _losses = distributed.one_thread_per_process, distributed.toy, distributed._losses


def _spec(toy: tuple[Path, Path], out: Path, **kwargs: Any) -> TrainSpec:
    return distributed._spec(toy, out, **{"deepspeed": ZERO2, **kwargs})


def test_the_spec_validates_nodes(tmp_path: Path) -> None:
    base = dict(output_dir=str(tmp_path), data_path="d.jsonl", base_model="m", max_steps=1, learning_rate=1.0)
    with pytest.raises(ValueError, match="several nodes need launcher 'torchrun' or 'deepspeed'"):
        TrainSpec(**base, nnodes=2)
    with pytest.raises(ValueError, match="unknown node_launcher 'ssh'"):
        TrainSpec(**base, nnodes=2, launcher="torchrun", node_launcher="ssh")
    with pytest.raises(ValueError, match="nnodes=0"):
        TrainSpec(**base, nnodes=0, launcher="torchrun")


def test_agent_commands(tmp_path: Path) -> None:
    """torchrun agents meet at c10d (ranked as they join); deepspeed runs per node from a hostfile,
    its node rank given, without ssh."""
    def spec(launcher: str) -> TrainSpec:
        return TrainSpec(output_dir=str(tmp_path), data_path="d.jsonl", base_model="m", max_steps=1, learning_rate=1.0,
                         launcher=launcher, nprocs=8, nnodes=4)

    rdzv = Rendezvous("10.0.0.1", 29400, "slurm-77-abc")
    worker = ["-m", "wcse.train.worker", str(tmp_path / "spec.json")]
    torchrun = agent_command(spec("torchrun"), tmp_path / "spec.json", rdzv, node_rank="3", hostfile=tmp_path / "hostfile")
    assert torchrun == [sys.executable, "-m", "torch.distributed.run", "--nnodes", "4", "--nproc_per_node", "8",
                        "--rdzv_backend", "c10d", "--rdzv_endpoint", "10.0.0.1:29400", "--rdzv_id", "slurm-77-abc",
                        "--max_restarts", "0", *worker]
    deepspeed = agent_command(spec("deepspeed"), tmp_path / "spec.json", rdzv, node_rank="3", hostfile=tmp_path / "hostfile")
    assert deepspeed == [sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", str(tmp_path / "hostfile"),
                         "--no_ssh", "--node_rank", "3", "--master_addr", "10.0.0.1", "--master_port", "29400",
                         "--module", "wcse.train.worker", str(tmp_path / "spec.json")]


def test_local_agents_rendezvous_on_loopback(tmp_path: Path) -> None:
    spec = _spec(("b", "d"), tmp_path, per_device_batch_size=4, launcher="deepspeed", nnodes=2, node_launcher="local")
    first, second = launch_commands(spec, tmp_path / "spec.json")
    assert first[first.index("--node_rank") + 1] == "0" and second[second.index("--node_rank") + 1] == "1"
    assert first[first.index("--master_addr") + 1] == "127.0.0.1"
    assert (tmp_path / "hostfile").read_text() == "node0 slots=1\nnode1 slots=1\n"


def test_srun_needs_a_slurm_job_with_the_nodes(tmp_path: Path) -> None:
    spec = _spec(("b", "d"), tmp_path, launcher="torchrun", nnodes=2)
    with pytest.raises(ValueError, match="no SLURM job here .*trainer.node_launcher=local rehearses"):
        launch_commands(spec, tmp_path / "spec.json", env={})


@pytest.fixture(scope="module")
def one_process(toy: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_training(_spec(toy, tmp_path_factory.mktemp("one") / "run", per_device_batch_size=8))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed"])
def test_two_agents_on_loopback_follow_one_process(toy: tuple[Path, Path], one_process: dict, tmp_path: Path,
                                                   launcher: str) -> None:
    """Two nodes of one process each (batch 4) against one process of batch 8: the same global
    batches, so the same losses up to the order of the sums (observed: identical to 1e-7)."""
    run = tmp_path / "run"
    spec = _spec(toy, run, per_device_batch_size=4, launcher=launcher, nnodes=2, node_launcher="local")
    start = time.perf_counter()
    metrics = run_training(spec, log_path=tmp_path / "train.log")
    print(f"{launcher}, 2 local agents: {time.perf_counter() - start:.1f}s wall")
    assert metrics["world_size"] == 2 and metrics["steps"] == 8
    assert metrics["train_tokens"] == one_process["train_tokens"]
    assert _losses(metrics) == pytest.approx(_losses(one_process), rel=1e-4)
    assert (run / "node-1.log").is_file()  # the second agent's output
    # rank 0 alone tells the story, on whichever agent c10d ranked first (the deepspeed launcher: node 0)
    logs = (tmp_path / "train.log").read_text() + (run / "node-1.log").read_text()
    assert logs.count("wcse.train.worker: training ") == 1
    assert (run / "hostfile").exists() == (launcher == "deepspeed")


@pytest.mark.slow
def test_a_failing_agent_stops_the_others(toy: tuple[Path, Path], tmp_path: Path) -> None:
    """The second node's agent dies at once (its worker cannot read the data): the first, which
    would wait at the rendezvous for minutes, is stopped and the error names both nodes."""
    spec = _spec(toy, tmp_path / "run", per_device_batch_size=4, launcher="torchrun", nnodes=2, node_launcher="local",
                 data_path=str(tmp_path / "absent.jsonl"))
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"training failed .*\n.*node 0: .*\n.*node 1: "):
        run_training(spec)
    assert time.perf_counter() - start < 300


@pytest.mark.slow
def test_a_grid_cell_trains_across_two_slurm_nodes(slurm_cluster: Path, tmp_path: Path) -> None:  # noqa: F811
    """``hydra/launcher=slurm trainer.nnodes=2``: one SLURM job of two nodes whose pipeline runs
    once, on the first; its train stage starts a torchrun agent on each node with srun, and the
    two meet at the c10d rendezvous (world size 2) on the first node's address."""
    env = {**os.environ, "WCSE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # the local cluster's queue, whatever a conf/local/slurm.yaml of this checkout says
    queue = ["hydra.launcher.partition=debug", "hydra.launcher.account=null", "hydra.launcher.qos=null",
             "hydra.launcher.constraint=null", "hydra.launcher.setup=[]", "hydra.launcher.mem_gb=null"]
    cmd = [sys.executable, "-m", "wcse.main", "-m", "hydra/launcher=slurm", *queue, "hydra.launcher.gpus_per_node=null",
           "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=30", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "experiment=toy_tiny", "setup=w2s", "trainer.launcher=torchrun", "trainer.nnodes=2"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    (job,) = sweep.glob("0-*")
    summary = json.loads((job / "summary.json").read_text())
    assert {arm: t["world_size"] for arm, t in summary["train"].items()} == {"wc": 2, "se": 2}
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    text = script.read_text()
    assert "#SBATCH --nodes=2" in text and "--nodes=1 --ntasks=1" in text  # two nodes held, one pipeline task
    log = (job / "main.log").read_text()  # one srun task per node, the rendezvous on the first node's address
    assert log.count("training on 2 nodes: srun --overlap --nodes=2 --ntasks=2 --ntasks-per-node=1 --nodelist=n1,n2") == 2
    assert "--rdzv_endpoint 127.0.0.1:" in log
