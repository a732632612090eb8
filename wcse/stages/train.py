"""Stage ``train``: the setup's target finetuned on each data arm (wc, se, mix, wc_one, se_one),
at each learning rate of ``trainer.lr_grid`` (one rate without it; the evaluate stage picks the
rate on validation).

An arm's SFT rows are built from the filtered sets it reads (:mod:`wcse.train.arms`, cheap, so
any run may build them); the finetune itself runs in worker processes (:mod:`wcse.train.launch`)
and resumes from its last checkpoint when it was interrupted.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wcse.artifacts import digest
from wcse.roles import Models
from wcse.settings import learning_rates, plan_budget, train_settings
from wcse.stages.base import Inputs, RunContext, Stage
from wcse.stages.verify import Filtered
from wcse.train import arms
from wcse.train.launch import run_training
from wcse.train.spec import TrainSpec

METRICS = (
    "train_loss", "steps", "n_examples", "train_seconds", "tokens_per_second", "mfu", "world_size",
    "attn_implementation", "gradient_checkpointing", "optimizer",
)


@dataclass(frozen=True)
class Trained:
    """The target finetuned on one arm: ``<cache>/train/<key>/`` (model/, checkpoints/, metrics.json)."""

    arm: str
    data: Path  # the arm's SFT rows: <cache>/arm/<key>/
    path: Path
    model_path: str  # the target it started from
    payload: dict[str, Any]

    @property
    def learning_rate(self) -> float:
        return self.payload["trainer"]["learning_rate"]

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.path / "metrics.json").read_text())

    def composition(self) -> dict[str, Any]:
        return json.loads((self.data / "composition.json").read_text())


def arm_payload(ctx: RunContext, arm: str, filtered: dict[str, Filtered]) -> dict[str, Any]:
    payload = {"arm": arm, "filtered": {s: filtered[s].path.name for s in arms.arm_sources(arm)}, "seed": ctx.cfg.seed}
    if arm == "mix":
        payload["mix_wc_fraction"] = ctx.cfg.setup.mix_wc_fraction
    if arm == "mix_budget":
        payload["split"] = split(ctx)
    return {"key": digest(payload)}


def split(ctx: RunContext) -> dict[str, int]:
    """The ``mix_budget`` arm's samples per problem from each model at this run's budget."""
    b = plan_budget(ctx.cfg)
    return arms.budget_split(ctx.cfg.setup.mix_budget_wc_share, b.wc_samples, b.se_samples)


def trained(ctx: RunContext, models: Models, arm: str, filtered: dict[str, Filtered]) -> tuple[Trained, ...]:
    """Where ``arm``'s finetunes of the setup's target are (or will be), one per learning rate,
    from their inputs' keys."""
    target = ctx.cfg.setup.target
    data = ctx.cache.path("arm", arm_payload(ctx, arm, filtered))
    runs = []
    for rate in learning_rates(ctx.cfg):
        payload = {
            "target": models.id(target, target=True),
            "attn_implementation": models.spec(target).attn_implementation,
            "data": data.name,
            "trainer": train_settings(ctx.cfg, rate),
        }
        runs.append(Trained(arm, data, ctx.cache.path("train", payload), models.path(target, target=True), payload))
    return tuple(runs)


def ensure_data(ctx: RunContext, run: Trained, filtered: dict[str, Filtered]) -> Path:
    """Build the arm's SFT rows unless they exist (an arm the filter left empty fails here)."""
    setup = ctx.cfg.setup

    def build_data(out: Path) -> None:
        rows = {s: filtered[s].sft_rows() for s in arms.arm_sources(run.arm)}
        data = arms.build_arm(
            run.arm, rows, mix_wc_fraction=setup.mix_wc_fraction, split=split(ctx) if run.arm == "mix_budget" else None, seed=ctx.cfg.seed
        )
        with open(out / "sft.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in data)
        counts = dict(sorted(Counter(row["source"] for row in data).items()))
        (out / "composition.json").write_text(json.dumps({"rows": len(data), "by_source": counts}))

    return ctx.cache.get_or_build("arm", arm_payload(ctx, run.arm, filtered), build_data, label=f"{run.arm} data")


def ensure(ctx: RunContext, run: Trained, filtered: dict[str, Filtered]) -> Trained:
    """Build the arm's data and the finetune unless they exist."""
    data = ensure_data(ctx, run, filtered)

    def build_model(out: Path) -> None:
        spec = TrainSpec(
            **run.payload["trainer"],
            output_dir=str(out),
            data_path=str(data / "sft.jsonl"),
            base_model=run.model_path,
            attn_implementation=run.payload["attn_implementation"],
        )
        run_training(spec, log_path=out / "train.log")

    label = f"{ctx.cfg.setup.target} on {run.arm} data (lr {run.learning_rate:g})"
    ctx.cache.get_or_build("train", run.payload, build_model, label=label, resumable=True)
    return run


def plan(ctx: RunContext, inputs: Inputs) -> dict[str, tuple[Trained, ...]]:
    return {arm: trained(ctx, inputs["pretrain"], arm, inputs["verify"]) for arm in ctx.cfg.setup.arms}


def missing(ctx: RunContext, out: dict[str, tuple[Trained, ...]]) -> list[str]:
    return [
        f"the {arm} finetune{f' (lr {t.learning_rate:g})' if len(runs) > 1 else ''} at {t.path}"
        for arm, runs in out.items() for t in runs if not ctx.cache.valid(t.path)
    ]


def result(run: Trained) -> dict[str, Any]:
    """One finetune's row of the summary's train section."""
    metrics = run.metrics()
    row = {k: metrics[k] for k in METRICS if k in metrics}
    return row | {"learning_rate": run.learning_rate, "data": run.composition(), "dir": str(run.path)}  # dir: metrics.json, checkpoints/, model/


def build(ctx: RunContext, inputs: Inputs, out: dict[str, tuple[Trained, ...]]) -> dict[str, Any]:
    """Each arm's finetune; with a learning-rate grid, the first rate's at the top and every rate's under ``grid``."""
    for runs in out.values():  # every arm's rows first: an arm the filter left empty stops the stage before any finetune
        ensure_data(ctx, runs[0], inputs["verify"])
    section = {}
    for arm, runs in out.items():
        rows = [result(ensure(ctx, run, inputs["verify"])) for run in runs]
        section[arm] = rows[0] | ({"grid": rows} if len(rows) > 1 else {})
    return {"train": section}


STAGE = Stage(
    name="train",
    needs=("pretrain", "verify"),
    output="the setup's target finetuned on each arm's data: `<cache>/train/<key>/{model,checkpoints,metrics.json}`",
    plan=plan,
    build=build,
    missing=missing,
    how="add 'train' to stages",
)
