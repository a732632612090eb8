"""The SLURM job this process runs in, read from the environment SLURM gives every job step.

A grid cell is one SLURM job (``hydra/launcher=slurm``, conf/hydra/launcher/slurm.yaml) whose
pipeline runs as one task on the job's first node; a training across ``trainer.nnodes`` nodes
starts one launcher agent on each of the job's first nodes with ``srun``
(:mod:`wcse.train.launch`). This module answers what those need: which nodes the job holds, in
SLURM's order, and the address of one of them.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    """A SLURM job seen from one of its steps."""

    id: str
    nodes: tuple[str, ...]  # the job's nodes, in SLURM's order (node 0 first)
    this_node: str | None  # the node this process runs on (SLURMD_NODENAME)


def current(env: Mapping[str, str] = os.environ) -> Job | None:
    """The SLURM job this process runs in; None outside SLURM."""
    job_id = env.get("SLURM_JOB_ID")
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not job_id or not nodelist:
        return None
    return Job(job_id, hostnames(nodelist), env.get("SLURMD_NODENAME"))


def _scontrol(*args: str) -> str:
    try:
        done = subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True, timeout=60)
    except FileNotFoundError:
        raise RuntimeError("scontrol is not on PATH: this job step cannot read its SLURM allocation") from None
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"scontrol {' '.join(args)} failed (exit {err.returncode}): {err.stderr.strip()}") from None
    return done.stdout


def hostnames(nodelist: str) -> tuple[str, ...]:
    """A compressed node list (``gpu[01-03,07]``) expanded by SLURM itself (``scontrol show hostnames``)."""
    names = tuple(_scontrol("show", "hostnames", nodelist).split())
    if not names:
        raise RuntimeError(f"scontrol show hostnames {nodelist!r} listed no nodes")
    return names


def node_address(node: str) -> str:
    """The address SLURM reaches ``node`` at (its ``NodeAddr``; the node name unless the cluster
    configures another), which the other nodes of the job can reach too."""
    found = re.search(r"\bNodeAddr=(\S+)", _scontrol("show", "node", "--oneliner", node))
    if found is None:
        raise RuntimeError(f"scontrol show node {node} reported no NodeAddr")
    return found.group(1)
