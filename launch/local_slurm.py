"""A two-node SLURM cluster on this machine, to try the cluster recipes before a real cluster.

Real SLURM daemons (Debian's ``slurmctld``/``slurmd``, 22.05 here): one controller and two
``slurmd`` emulating nodes ``n1`` and ``n2`` (``slurmd -N``), both at 127.0.0.1, with no
authentication daemon (``auth/none``) and no accounting database. Jobs, arrays, ``srun`` steps
across both "nodes" and ``srun --overlap`` inside a step behave as on a cluster; what differs:
both nodes share this machine's CPUs, there are no GPUs (GRES), and ``sacct`` has nothing to
report (submitit then learns that a job ended from its result file only). Needs root (slurmd
starts jobs as their users) and ``apt-get install slurmctld slurmd slurm-client``.

    sudo python launch/local_slurm.py start /tmp/wcse-slurm      # prints the SLURM_CONF to export
    export SLURM_CONF=/tmp/wcse-slurm/slurm.conf; sinfo           # debug* up 2 idle n[1-2]
    sudo python launch/local_slurm.py stop /tmp/wcse-slurm

The tests start one when the daemons are installed and run as root (tests/slurm_cluster.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NODES = ("n1", "n2")
PARTITION = "debug"
DAEMONS = ("slurmctld", "slurmd", "sinfo", "sbatch", "srun", "scontrol")


def available() -> str | None:
    """Why a local cluster cannot start here (None: it can)."""
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if missing:
        return f"SLURM is not installed ({missing} missing; apt-get install slurmctld slurmd slurm-client)"
    if os.geteuid() != 0:
        return "slurmd needs root"
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def config(root: Path) -> str:
    host = socket.gethostname()
    cpus = os.cpu_count() or 1
    ctld, slurmd, *node_ports = _free_ports(2 + len(NODES))
    nodes = "\n".join(
        f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} RealMemory=4000 State=UNKNOWN"
        for name, port in zip(NODES, node_ports, strict=True)
    )
    return f"""\
ClusterName=wcse-local
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=600
{nodes}
PartitionName={PARTITION} Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
"""


def start(root: Path, timeout_s: float = 60) -> Path:
    """Start the cluster with its state under ``root``; returns its slurm.conf once both nodes are idle."""
    why = available()
    if why:
        raise RuntimeError(f"cannot start a local SLURM cluster: {why}")
    for sub in ("state", "log", *(f"spool/{n}" for n in NODES)):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(config(root))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env)
    for node in NODES:
        subprocess.run(["slurmd", "-f", str(conf), "-N", node], check=True, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = subprocess.run(["sinfo", "-h", "-o", "%T", "-p", PARTITION], capture_output=True, text=True, env=env)
        if states.returncode == 0 and states.stdout.split() == ["idle"]:
            return conf
        time.sleep(1)
    stop(root)
    raise RuntimeError(f"the local SLURM cluster did not come up in {timeout_s:.0f} s; logs in {root / 'log'}")


def stop(root: Path) -> None:
    """Stop the daemons started by :func:`start` (by the pids in their pid files)."""
    for pid_file in sorted(root.glob("*.pid")):
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python launch/local_slurm.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("root", type=Path, help="folder for the cluster's config, state and logs")
    args = parser.parse_args()
    if args.action == "start":
        print(f"export SLURM_CONF={start(args.root.resolve())}")
    else:
        stop(args.root.resolve())


if __name__ == "__main__":
    sys.exit(main())
