"""Stage ``pretrain``: which model plays each role, and (toy world) the ladder built by pretraining.

Its output, :class:`~wcse.roles.Models`, is what every model-using stage reads. For the toy pair
the ladder is the shipped checkpoints, or, with ``stages=[pretrain]`` or ``toy.pretrain=true``,
the rungs rebuilt by :mod:`wcse.toy.pretrain`: one cached artifact per rung, keyed by its recipe,
so retuning one model retrains only that model. ``toy.publish=true`` copies them into the package.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Any

from wcse import models
from wcse.artifacts import digest
from wcse.evaluate import Evaluator
from wcse.roles import ROLES, Models
from wcse.stages.base import Inputs, RunContext, Stage, plain
from wcse.toy import ladder

log = logging.getLogger(__name__)


def is_toy(cfg: Any) -> bool:
    return any(cfg.model_pair[r].path.startswith(models.TOY_PREFIX) for r in ROLES)


def rebuilds(ctx: RunContext) -> bool:
    return is_toy(ctx.cfg) and (ctx.cfg.toy.pretrain or "pretrain" in ctx.selected)


def rung_payload(ctx: RunContext, role: str, test_ids: list[str]) -> dict[str, Any]:
    """What a rung depends on: its recipe, and where its pass@1 is measured (the test split and the
    evaluator, not the whole dataset)."""
    from wcse.toy.pretrain import RECIPE_VERSION  # torch and the trainer: only when rebuilding

    toy = plain(ctx.cfg.toy)
    return {k: toy[k] for k in ("corpus_size", "batch_size", "seed")} | {
        "role": role,
        "model": toy["models"][role],
        "recipe": RECIPE_VERSION,
        "test": digest(test_ids),
        "evaluator": plain(ctx.cfg.evaluator),
    }


def plan(ctx: RunContext, inputs: Inputs) -> Models:
    if not rebuilds(ctx):
        return Models(ctx.cfg.model_pair, {role: ladder.SHIPPED / role for role in ROLES})
    test_ids = [p.id for p in inputs["dataset"].main.splits[ctx.cfg.evaluator.split]]
    paths = {role: ctx.cache.path("pretrain", rung_payload(ctx, role, test_ids)) for role in ROLES}
    return Models(ctx.cfg.model_pair, paths, ladder_ids={role: f"pretrain@{p.name}" for role, p in paths.items()})


def missing(ctx: RunContext, built: Models) -> list[str]:
    if not rebuilds(ctx):
        return []
    return [f"toy {role} at {path}" for role, path in built.ladder.items() if not ctx.cache.valid(path)]


def build(ctx: RunContext, inputs: Inputs, built: Models) -> dict[str, Any]:
    from wcse.toy.pretrain import pretrain_model

    if not is_toy(ctx.cfg):
        raise ValueError(f"stages: 'pretrain' builds the toy ladder; model_pair={ctx.cfg.model_pair.name} is not toy")
    evaluator = Evaluator(ctx.cfg, inputs["dataset"].main)
    test_ids = [p.id for p in inputs["dataset"].main.splits[ctx.cfg.evaluator.split]]
    records = {}
    for role in ROLES:
        path = ctx.cache.get_or_build(
            "pretrain",
            rung_payload(ctx, role, test_ids),
            lambda out, role=role: pretrain_model(ctx.cfg.toy, role, out, evaluator),
            label=f"toy {role}",
        )
        records[role] = json.loads((path / "pretrain.json").read_text())
    if ctx.cfg.toy.publish:
        for role, path in built.ladder.items():
            shutil.rmtree(ladder.SHIPPED / role, ignore_errors=True)
            shutil.copytree(path, ladder.SHIPPED / role, ignore=shutil.ignore_patterns("manifest.json", "training_args.bin"))
        log.info("published the rebuilt ladder to %s", ladder.SHIPPED)
    return {"pretrain": records}


STAGE = Stage(
    name="pretrain",
    needs=("dataset",),
    output="the toy ladder (Student < WC < SE), pretrained: `<cache>/pretrain/<key>/` per rung (toy pair only)",
    plan=plan,
    build=build,
    missing=missing,
    how="stages=[pretrain] (or toy.pretrain=false for the shipped ladder)",
)
