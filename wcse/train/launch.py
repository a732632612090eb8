"""Run a :class:`TrainSpec` in a fresh worker process and return its metrics."""

from __future__ import annotations

import codecs
import collections
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from wcse.train.sft import TrainSpec


def run_training(spec: TrainSpec, *, log_path: Path | None = None) -> dict[str, Any]:
    """Train in a subprocess (DeepSpeed state never reaches the caller); raise on failure.

    Output goes to the console as it comes (progress bars included) and to ``log_path``.
    """
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec.save(spec_path)
    worker = ["-m", "wcse.train.worker", str(spec_path)]
    if spec.launcher == "torchrun":
        nproc = ["--nproc_per_node", str(spec.nprocs)]
        worker = ["-m", "torch.distributed.run", "--standalone", *nproc, *worker]
    cmd = [sys.executable, *worker]

    tail: collections.deque[str] = collections.deque(maxlen=40)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    with open(log_path or os.devnull, "w") as log, subprocess.Popen(
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
