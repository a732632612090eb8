"""The jobs a multirun planned (wcse.report.planned), checked against what Hydra itself launched:
a real multirun of a two-line Hydra app (seconds, where a wcse job takes minutes) with every
kind of sweep the basic sweeper expands: values, choice(), range(), glob() over a config group,
sweeper params from the config, a plain override and a repeated key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wcse.report.planned import planned_jobs
from wcse.report.sweep import collect

APP = """
import hydra

@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    pass

if __name__ == "__main__":
    main()
"""
CONFIG = """
defaults:
  - color: red
  - _self_
size: 1
lr: 0.1
seed: 0
hydra:
  sweeper:
    params:
      seed: 1,2
"""


@pytest.fixture(scope="module")
def multirun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planned")
    (root / "conf" / "color").mkdir(parents=True)
    (root / "app.py").write_text(APP)
    (root / "conf" / "config.yaml").write_text(CONFIG)
    for color in ("red", "green", "blue", "grey"):
        (root / "conf" / "color" / f"{color}.yaml").write_text(f"name: {color}\n")
    args = [
        "color=glob(*,exclude=gr*)",  # blue, red: a group's options, sorted
        "size=range(1,3)",
        "lr=choice(0.1,0.01)",
        "+tag=x",
        "size=5",  # a key given twice: the later value, in the first one's place
        f"hydra.sweep.dir={root / 'sweep'}",
    ]
    proc = subprocess.run(
        [sys.executable, "app.py", "-m", *args], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sweep"


def _launched(sweep: Path) -> list[list[str]]:
    """The overrides of each job Hydra launched, by job number (its job folders are named so)."""
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    return [yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) for job in jobs]


def test_planned_jobs_are_the_jobs_hydra_launched(multirun: Path) -> None:
    planned = planned_jobs(multirun)
    assert planned == _launched(multirun)
    assert len(planned) == 8  # seed 2 x color 2 x lr 2
    assert planned[0] == ["seed=1", "color=blue", "size=5", "lr=0.1", "+tag=x"]


def test_a_planned_job_without_a_folder_is_listed(multirun: Path, tmp_path: Path) -> None:
    shutil.copytree(multirun, tmp_path / "sweep")
    shutil.rmtree(tmp_path / "sweep" / "6")
    missing = collect(tmp_path / "sweep").failed[-1]
    assert missing.job == "#6"
    assert missing.reason.startswith(
        "no job folder for (seed=2 color=red size=5 lr=0.1 +tag=x): not started yet"
    )


def test_a_sweep_that_is_no_multirun_plans_nothing(tmp_path: Path) -> None:
    assert planned_jobs(tmp_path) == []
    (tmp_path / "multirun.yaml").write_text("hydra: {sweeper: {_target_: x.BasicSweeper}}\n")
    with pytest.raises(ValueError, match="malformed multirun.yaml: KeyError"):
        planned_jobs(tmp_path)
    assert [f.job for f in collect(tmp_path).failed] == ["multirun.yaml"]
