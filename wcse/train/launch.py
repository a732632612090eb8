"""Run a :class:`TrainSpec` in fresh worker processes and return its metrics.

Hydra lives only in this (parent) process: it composes the config once and owns the one run
directory, and the workers get a plain JSON spec, not Hydra's command line. So the known
clashes of ``@hydra.main`` with multi-process launchers cannot arise: ``--local_rank`` rejected as
an override (hydra #2038) and one output directory per rank (hydra #2070). All ranks share the
spec's ``output_dir``; rank 0 writes the model and metrics. The parent neither imports DeepSpeed
nor starts torch.distributed, so it never holds their global state.

Several nodes (``nnodes > 1``): the launcher runs as one *agent* per node, each starting
``nprocs`` workers, and the agents meet at a rendezvous on the first node. ``torchrun`` agents
use its c10d rendezvous (whichever agent runs where the endpoint is hosts the store); the
``deepspeed`` launcher runs per node without ssh (``--no_ssh --node_rank``) from a hostfile.
``node_launcher=srun`` starts the agents inside this process's SLURM job, one task per node
with ``srun --overlap`` (the pipeline's own step keeps running on the first node and shares it);
``node_launcher=local`` starts them all here, on 127.0.0.1. The spec's ``output_dir`` must be
on a file system every node sees: rank 0 may run on any of them.
"""

from __future__ import annotations

import codecs
import collections
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wcse import slurm
from wcse.train.spec import TrainSpec

log = logging.getLogger(__name__)

SLURM_NODE_RANK = "$SLURM_NODEID"  # an agent's node rank, expanded by the shell of each srun task


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(spec: TrainSpec, spec_path: Path) -> list[str]:
    """The command line that starts the spec's worker processes on this one node.

    ``deepspeed`` passes ``--local_rank=N`` to each worker (which ignores it: LOCAL_RANK is set
    too) and would default to port 29500; a free port lets runs share a machine, as torchrun's
    ``--standalone`` rendezvous does by itself. With ``--num_gpus`` it takes GPUs 0..N-1 whatever
    CUDA_VISIBLE_DEVICES says; use torchrun to train on chosen GPUs. Both run on CPU too (gloo).
    """
    if spec.nnodes != 1:
        raise ValueError(f"nnodes={spec.nnodes}: a multi-node run has one agent per node (launch_commands)")
    worker = ["wcse.train.worker", str(spec_path)]
    if spec.launcher == "torchrun":
        launch = ["torch.distributed.run", "--standalone", "--nproc_per_node", str(spec.nprocs)]
        return [sys.executable, "-m", *launch, "-m", *worker]
    if spec.launcher == "deepspeed":
        launch = ["deepspeed.launcher.runner", "--num_gpus", str(spec.nprocs), "--master_port", str(free_port())]
        return [sys.executable, "-m", *launch, "--module", *worker]
    return [sys.executable, "-m", *worker]


@dataclass(frozen=True)
class Rendezvous:
    """Where the agents of one multi-node launch meet: an address of the first node, a port there,
    and an id no other launch shares (a stale agent of an earlier launch cannot join)."""

    host: str
    port: int
    id: str


def agent_command(spec: TrainSpec, spec_path: Path, rdzv: Rendezvous, *, node_rank: str, hostfile: Path) -> list[str]:
    """The launcher agent of one node of a multi-node run (``node_rank`` is read by the deepspeed
    launcher only; c10d ranks the torchrun agents as they join)."""
    worker = ["wcse.train.worker", str(spec_path)]
    if spec.launcher == "torchrun":
        return [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", str(spec.nnodes),
            "--nproc_per_node", str(spec.nprocs), "--rdzv_backend", "c10d",
            "--rdzv_endpoint", f"{rdzv.host}:{rdzv.port}", "--rdzv_id", rdzv.id, "--max_restarts", "0",
            "-m", *worker,
        ]
    if spec.launcher == "deepspeed":
        return [
            sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", str(hostfile), "--no_ssh",
            "--node_rank", node_rank, "--master_addr", rdzv.host, "--master_port", str(rdzv.port),
            "--module", *worker,
        ]
    raise ValueError(f"launcher {spec.launcher!r} runs one process on one node")


def write_hostfile(spec: TrainSpec, path: Path, nodes: list[str]) -> None:
    """DeepSpeed's hostfile (its launcher only): the nodes in node-rank order, ``nprocs`` slots each."""
    if spec.launcher == "deepspeed":
        path.write_text("".join(f"{node} slots={spec.nprocs}\n" for node in nodes))


def launch_commands(spec: TrainSpec, spec_path: Path, env: Mapping[str, str] = os.environ) -> list[list[str]]:
    """The commands this process starts to run the spec: one for a single node or for ``srun``
    (which starts the agents itself), one per agent for ``node_launcher=local``."""
    if spec.nnodes == 1:
        return [command(spec, spec_path)]
    hostfile = spec_path.parent / "hostfile"
    launch_id = uuid.uuid4().hex[:12]
    if spec.node_launcher == "local":
        rdzv = Rendezvous("127.0.0.1", free_port(), f"local-{launch_id}")
        write_hostfile(spec, hostfile, [f"node{rank}" for rank in range(spec.nnodes)])
        return [agent_command(spec, spec_path, rdzv, node_rank=str(rank), hostfile=hostfile) for rank in range(spec.nnodes)]

    job = slurm.current(env)
    if job is None:
        raise ValueError(
            f"trainer.nnodes={spec.nnodes} with node_launcher=srun runs inside a SLURM job holding {spec.nnodes} nodes "
            f"(hydra/launcher=slurm hydra.launcher.nodes={spec.nnodes}); no SLURM job here (SLURM_JOB_ID unset). "
            "trainer.node_launcher=local rehearses the run on this machine"
        )
    if len(job.nodes) < spec.nnodes:
        raise ValueError(
            f"trainer.nnodes={spec.nnodes}, but SLURM job {job.id} holds {len(job.nodes)} node(s) {list(job.nodes)}: "
            f"submit the cell with hydra.launcher.nodes={spec.nnodes}"
        )
    nodes = list(job.nodes[: spec.nnodes])
    host = env.get("MASTER_ADDR") or slurm.node_address(nodes[0])
    if env.get("MASTER_PORT"):
        port = int(env["MASTER_PORT"])
    elif job.this_node == nodes[0]:
        port = free_port()  # the rendezvous is hosted here, where the pipeline runs
    else:
        raise ValueError(
            f"the rendezvous is hosted on the job's first node {nodes[0]}, but this process runs on {job.this_node}: "
            "set MASTER_PORT to a port free there"
        )
    write_hostfile(spec, hostfile, nodes)
    agent = agent_command(spec, spec_path, Rendezvous(host, port, f"slurm-{job.id}-{launch_id}"),
                          node_rank=SLURM_NODE_RANK, hostfile=hostfile)
    # One task per node; --overlap: the pipeline's step holds the first node's CPUs and GPUs and
    # shares them (SLURM_GPUS_PER_NODE, inherited, asks for the job's GPUs on every node).
    srun = ["srun", "--overlap", f"--nodes={spec.nnodes}", f"--ntasks={spec.nnodes}", "--ntasks-per-node=1",
            f"--nodelist={','.join(nodes)}", "--kill-on-bad-exit=1"]
    shell = " ".join('"$SLURM_NODEID"' if part == SLURM_NODE_RANK else shlex.quote(part) for part in agent)
    return [[*srun, "sh", "-c", f"exec {shell}"]]


def run_training(spec: TrainSpec, *, log_path: Path | None = None) -> dict[str, Any]:
    """Train in subprocesses (DeepSpeed state never reaches the caller); raise on failure.

    An ``output_dir`` that holds an interrupted run of the same spec resumes it (see
    :mod:`wcse.train.worker`); one that holds another spec's run is refused, since its
    optimizer state and checkpoints belong to different settings.
    Output goes to the console as it comes (progress bars included) and is appended to
    ``log_path``, so a resumed run's log follows the interrupted one's. With local agents, the
    first one's output is streamed and the others' go to ``node-<rank>.log`` in the output_dir;
    when one agent fails, the others are stopped.
    """
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    if spec_path.exists() and TrainSpec.load(spec_path) != spec:
        raise ValueError(f"{out} holds a run of another TrainSpec ({spec_path}); train into a new output_dir")
    spec.save(spec_path)
    first, *others = launch_commands(spec, spec_path)
    if spec.nnodes > 1:
        log.info("training on %d nodes: %s", spec.nnodes, " | ".join(shlex.join(c) for c in [first, *others]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    tail: collections.deque[str] = collections.deque(maxlen=40)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    logs = [open(out / f"node-{rank}.log", "a") for rank in range(1, len(others) + 1)]
    with open(log_path or os.devnull, "a") as log_file:
        procs = [subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env) for cmd, fh in zip(others, logs, strict=True)]
        with subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:
            watch = _stop_all_when_one_fails([proc, *procs])
            # read1 returns whatever is available, so \r-updated progress bars stream too.
            while chunk := proc.stdout.read1(1 << 16):
                text = decoder.decode(chunk)
                sys.stderr.write(text)
                log_file.write(text)
                *lines, pending = (pending + text).split("\n")
                tail.extend(line.rsplit("\r", 1)[-1] for line in lines)  # last state of a progress bar
        codes = [proc.returncode, *(p.wait() for p in procs)]
        watch.set()
    for fh in logs:
        fh.close()
    if pending:
        tail.append(pending.rsplit("\r", 1)[-1])
    if any(codes):
        failed = "\n".join(f"node {rank}: {' '.join(cmd)}" for rank, cmd in enumerate([first, *others]))
        others_tail = "".join(_tail(out / f"node-{rank}.log") for rank in range(1, len(others) + 1))
        raise RuntimeError(f"training failed (exit {codes}):\n{failed}\n" + "\n".join(tail) + others_tail)
    return json.loads((out / "metrics.json").read_text())


def _stop_all_when_one_fails(procs: list[subprocess.Popen[bytes]]) -> threading.Event:
    """Terminate every agent once one exits with an error (the others would wait at the
    rendezvous or a collective until they time out); set the returned event to stop watching."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            if any(p.poll() not in (None, 0) for p in procs):
                for p in procs:
                    if p.poll() is None:
                        p.terminate()
                return

    if len(procs) > 1:
        threading.Thread(target=watch, daemon=True).start()
    return done


def _tail(path: Path, lines: int = 20) -> str:
    with open(path, errors="replace") as fh:
        return f"\n--- {path.name} ---\n" + "".join(collections.deque(fh, maxlen=lines))
