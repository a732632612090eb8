"""Run a :class:`TrainSpec` in fresh worker processes and return its metrics.

Hydra lives only in this (parent) process: it composes the config once and owns the one run
directory, and the workers get a plain JSON spec, not Hydra's command line. So the known
clashes of ``@hydra.main`` with multi-process launchers cannot arise: ``--local_rank`` rejected as
an override (hydra #2038) and one output directory per rank (hydra #2070). All ranks share the
spec's ``output_dir``; rank 0 writes the model and metrics. The parent neither imports DeepSpeed
nor starts torch.distributed, so it never holds their global state.
"""

from __future__ import annotations

import codecs
import collections
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from wcse.train.sft import TrainSpec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(spec: TrainSpec, spec_path: Path) -> list[str]:
    """The command line that starts the spec's worker processes.

    ``deepspeed`` passes ``--local_rank=N`` to each worker (which ignores it: LOCAL_RANK is set
    too) and would default to port 29500; a free port lets runs share a machine, as torchrun's
    ``--standalone`` rendezvous does by itself. With ``--num_gpus`` it takes GPUs 0..N-1 whatever
    CUDA_VISIBLE_DEVICES says; use torchrun to train on chosen GPUs. Both run on CPU too (gloo).
    """
    worker = ["wcse.train.worker", str(spec_path)]
    if spec.launcher == "torchrun":
        launch = ["torch.distributed.run", "--standalone", "--nproc_per_node", str(spec.nprocs)]
        return [sys.executable, "-m", *launch, "-m", *worker]
    if spec.launcher == "deepspeed":
        launch = ["deepspeed.launcher.runner", "--num_gpus", str(spec.nprocs), "--master_port", str(free_port())]
        return [sys.executable, "-m", *launch, "--module", *worker]
    return [sys.executable, "-m", *worker]


def run_training(spec: TrainSpec, *, log_path: Path | None = None) -> dict[str, Any]:
    """Train in subprocesses (DeepSpeed state never reaches the caller); raise on failure.

    An ``output_dir`` that holds an interrupted run of the same spec resumes it (see
    :mod:`wcse.train.worker`); one that holds another spec's run is refused, since its
    optimizer state and checkpoints belong to different settings.
    Output goes to the console as it comes (progress bars included) and is appended to
    ``log_path``, so a resumed run's log follows the interrupted one's.
    """
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    if spec_path.exists() and TrainSpec.load(spec_path) != spec:
        raise ValueError(f"{out} holds a run of another TrainSpec ({spec_path}); train into a new output_dir")
    spec.save(spec_path)
    cmd = command(spec, spec_path)

    tail: collections.deque[str] = collections.deque(maxlen=40)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    with open(log_path or os.devnull, "a") as log, subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    ) as proc:
        # read1 returns whatever is available, so \r-updated progress bars stream too.
        while chunk := proc.stdout.read1(1 << 16):
            text = decoder.decode(chunk)
            sys.stderr.write(text)
            log.write(text)
            *lines, pending = (pending + text).split("\n")
            tail.extend(line.rsplit("\r", 1)[-1] for line in lines)  # last state of a progress bar
    if pending:
        tail.append(pending.rsplit("\r", 1)[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"training failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return json.loads((out / "metrics.json").read_text())
