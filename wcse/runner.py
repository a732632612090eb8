"""Run the selected stages of the graph (:mod:`wcse.stages`) and write the run's summary.

1. Every stage the selection needs is *planned* in graph order: its output's addresses are
   computed from the config and its upstream outputs, and nothing is built.
2. A needed stage that is not selected must already be in the cache (what a selected stage
   reads directly): if not, the run stops before anything runs, naming the stage and how to
   build it.
3. The selected stages are built in order and timed; each returns its part of the summary,
   which is written to ``<run_dir>/summary.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from wcse.artifacts import Cache, MissingArtifact
from wcse.stages import graph
from wcse.stages.base import RunContext, Stage
from wcse.summary import VERSION, RunSummary

log = logging.getLogger(__name__)

# Cheap, deterministic artifacts any run may build: the problems, and an arm's SFT rows.
ALWAYS_BUILT = ("dataset", "arm")
SAMPLE_PHASE = ("pretrain", "dataset", "sample")  # what a data-parallel sampling shard may run


def needed(stages: tuple[Stage, ...], selected: frozenset[str]) -> list[Stage]:
    """The selected stages and everything they need, in graph order."""
    by_name = {s.name: s for s in stages}
    wanted = set(selected)
    for stage in reversed(stages):
        if stage.name in wanted:
            wanted.update(stage.needs)
    return [by_name[name] for name in by_name if name in wanted]


def check(ctx: RunContext, stages: list[Stage], outputs: dict[str, Any]) -> None:
    """Refuse a selection whose inputs are neither selected nor cached, before anything runs."""
    shard = ctx.cfg.sampler.shard
    later = sorted(ctx.selected - set(SAMPLE_PHASE))
    if shard.count > 1 and later:
        raise MissingArtifact(
            f"sampler.shard.count={shard.count}: stages {later} need every shard's samples; run every shard's "
            "sample stage first (stages=[dataset,sample]), then the later stages with sampler.shard.count=1"
        )
    read = {need for s in stages if s.name in ctx.selected for need in s.needs}
    problems = []
    for stage in stages:
        if stage.name in ctx.selected or stage.name not in read:
            continue
        absent = stage.missing(ctx, outputs[stage.name])
        if absent:
            problems.append(
                f"stage '{stage.name}' is not in `stages` and its output is not in the cache "
                f"({'; '.join(absent[:3])}{'; ...' if len(absent) > 3 else ''}): {stage.how}"
            )
    if problems:
        raise MissingArtifact("\n".join(problems))


@dataclass
class Plan:
    """A run's context and every needed stage's planned output (addresses; nothing built)."""

    ctx: RunContext
    stages: list[Stage]
    outputs: dict[str, Any]
    seconds: float


def plan(cfg: DictConfig, *, check_cache: bool = True) -> Plan:
    """Plan the run's stages without building any; ``check_cache``: and refuse a selection whose
    inputs are neither selected nor cached (:func:`check`)."""
    start = time.perf_counter()
    selected = frozenset(cfg.stages)
    cache = Cache(cfg.paths.cache_dir, allowed={*selected, *ALWAYS_BUILT}, lock_timeout_s=cfg.paths.lock_timeout_s)
    ctx = RunContext(cfg, cache, Path(cfg.paths.run_dir), selected)
    stages = needed(graph(), selected)
    outputs: dict[str, Any] = {}
    for stage in stages:
        outputs[stage.name] = stage.plan(ctx, {need: outputs[need] for need in stage.needs})
    if check_cache:
        check(ctx, stages, outputs)
    return Plan(ctx, stages, outputs, round(time.perf_counter() - start, 2))


def run(cfg: DictConfig) -> RunSummary:
    """Plan, check and build the run's stages; returns the summary it wrote."""
    planned = plan(cfg)
    ctx, outputs = planned.ctx, planned.outputs
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    log.info("run directory: %s | cache: %s", ctx.run_dir, ctx.cache.root)
    summary: dict[str, Any] = {}
    timing = {"plan": planned.seconds}  # the dataset is loaded here
    for stage in planned.stages:
        if stage.name not in ctx.selected:
            continue
        log.info("=== stage %s", stage.name)
        start = time.perf_counter()
        summary.update(stage.build(ctx, {need: outputs[need] for need in stage.needs}, outputs[stage.name]))
        timing[stage.name] = round(time.perf_counter() - start, 2)
    done = RunSummary.parse({"version": VERSION, **summary, "timing_seconds": timing, "artifacts": ctx.cache.events})
    path = ctx.run_dir / "summary.json"
    done.write(path)
    log.info("summary -> %s", path)
    return done
