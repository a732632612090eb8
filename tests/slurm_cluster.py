"""A real two-node SLURM cluster on this machine for the tests that submit jobs
(launch/local_slurm.py: Debian's slurmctld and two slurmd at 127.0.0.1); skipped where SLURM is
not installed or the tests do not run as root, as on a user's laptop."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _local_slurm():  # launch/ is not a package: load the recipe's script itself
    spec = importlib.util.spec_from_file_location("local_slurm", ROOT / "launch" / "local_slurm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """SLURM_CONF of a running two-node cluster (set in this process's environment while it runs)."""
    local_slurm = _local_slurm()
    why = local_slurm.available()
    if why:
        pytest.skip(f"no local SLURM cluster: {why}")
    root = tmp_path_factory.mktemp("slurm")
    conf = local_slurm.start(root)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        yield conf
    finally:
        local_slurm.stop(root)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
