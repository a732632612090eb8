"""Stage ``report``: what the run was and where its artifacts are, for the summary's readers
(the console table, wandb and ``python -m wcse.report`` over a sweep)."""

from __future__ import annotations

from typing import Any

from wcse.stages.base import Inputs, RunContext, Stage


def plan(ctx: RunContext, inputs: Inputs) -> None:
    return None


def build(ctx: RunContext, inputs: Inputs, _: None) -> dict[str, Any]:
    cfg = ctx.cfg
    return {
        "run": {
            "model_pair": cfg.model_pair.name,
            "dataset": cfg.dataset.name,
            "setup": cfg.setup.name,
            "budget": cfg.budget.name,
            "seed": cfg.seed,
            "run_dir": str(ctx.run_dir),
            "cache_dir": str(ctx.cache.root),
            "stages": list(cfg.stages),
        }
    }


STAGE = Stage(
    name="report",
    needs=(),
    output="what the run was and where its artifacts are, in `<run_dir>/summary.json`",
    plan=plan,
    build=build,
)
