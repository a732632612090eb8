"""Sweeps through Hydra's submitit launcher (``hydra/launcher=local``: submitit_local, each job its
own process, as SLURM would start them): a toy grid whose jobs share one cache, a failed job
recorded and reported, and a model's sampling fanned out into shard jobs whose samples a later
run finds in the store. These are the commands launch/README.md gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_config
from wcse import runner
from wcse.sampling.store import SampleStore

TOY = ["experiment=toy_tiny"]


def wcse(tmp_path: Path, module: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """``python -m <module> ARGS`` on this tree, the cache under tmp_path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WCSE_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def submitit_multirun(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    sweep = tmp_path / "sweep"
    done = wcse(tmp_path, "wcse.main", "-m", "hydra/launcher=local", f"hydra.sweep.dir={sweep}", *overrides)
    return done, sweep


def jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: int(p.name.split("-", 1)[0]))


def stores(cache: Path) -> dict[str, SampleStore]:
    return {p.name: SampleStore(p) for p in sorted((cache / "samples").iterdir()) if p.is_dir()}


def _lines(store: SampleStore) -> int:
    """Samples written to the store's shard files, duplicates included."""
    return sum(len(shard.read_text().splitlines()) for shard in store.shards())


@pytest.mark.slow
def test_a_toy_grid_runs_through_submitit_and_a_failed_job_is_recorded_and_reported(tmp_path: Path) -> None:
    """Three cells, each a submitit job in its own process, at once: two budgets that sample into
    the same two stores concurrently (the high budget's 10 SE samples per problem include the low
    one's 1), and a cell that fails (the toy pair has no prices to match on)."""
    done, sweep = submitit_multirun(tmp_path, *TOY, "dataset.toy.n_train=8", "stages=[dataset,sample,verify,metrics]", "setup=w2s",
                                    "budget=low,high,price_matched")
    assert done.returncode == 0, done.stderr[-3000:]
    low, high, failed = jobs(sweep)
    assert [j.name.split("-", 1)[0] for j in (low, high, failed)] == ["0", "1", "2"]
    assert "budget=price_matched" in failed.name
    # recorded: the traceback in its directory, no summary
    assert "ConfigError" in (failed / "FAILED").read_text() and not (failed / "summary.json").exists()
    for job, (se, wc) in ((low, (8, 24)), (high, (80, 240))):
        summary = json.loads((job / "summary.json").read_text())
        assert summary["sampling"]["models"]["se"]["samples"] == se and summary["sampling"]["models"]["wc"]["samples"] == wc
    # submitit ran them: one folder of logs and pickled results per job
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 3
    # one cache for all jobs: the two budgets wrote one store per model, each sample once
    counts = sorted((len(s.keys()), _lines(s)) for s in stores(tmp_path / "cache").values())
    assert counts == [(80, 80), (240, 240)]
    # reported: the sweep's report lists the failed job with its error
    report = wcse(tmp_path, "wcse.report", str(sweep), "--out", str(tmp_path / "report"), timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    assert failed.name in report.stdout and "price" in report.stdout


@pytest.mark.slow
def test_sampling_fans_out_into_shard_jobs_and_the_main_run_finds_every_sample(tmp_path: Path) -> None:
    """``-m hydra/launcher=local stages=[dataset,sample] sampler.shard.count=2
    'sampler.shard.index=range(2)'``: two jobs, each sampling a disjoint half of the problems into
    the shared store; the main run then samples nothing."""
    done, sweep = submitit_multirun(tmp_path, *TOY, "dataset.toy.n_train=16", "stages=[dataset,sample]",
                                    "sampler.shard.count=2", "sampler.shard.index=range(2)")
    assert done.returncode == 0, done.stderr[-3000:]
    shard_jobs = jobs(sweep)
    assert len(shard_jobs) == 2 and not list(sweep.glob("*/FAILED"))
    per_job = [json.loads((j / "summary.json").read_text())["sampling"]["models"]["se"]["samples"] for j in shard_jobs]
    assert all(0 < n < 16 for n in per_job) and sum(per_job) == 16  # disjoint halves
    files = set((tmp_path / "cache" / "samples").rglob("shard-*.jsonl"))

    summary = runner.run(compose_config(tmp_path, *TOY, "dataset.toy.n_train=16", "stages=[dataset,sample,verify,metrics]"))
    assert summary.sampling.models["se"].samples == 16 and summary.sampling.models["wc"].samples == 48
    assert set((tmp_path / "cache" / "samples").rglob("shard-*.jsonl")) == files  # nothing sampled again
