"""Stage ``evaluate``: the base models and each arm's finetuned target, scored.

Finetuned models are scored zero-shot, the form they were trained on. Base models are scored
with the sampling prompt's exemplars when it has any (their real ability: a base model zero-shot
rarely closes in the graded format), and zero-shot beside it for reference; every gain is
measured against the few-shot score, as the paper's base rows are.

The paper's checkpoint selection: every saved checkpoint of an arm's finetune is scored on the
validation split and the best one is tested (ties: the later step). With a transfer set, the
same models are also scored on its test split (nothing retrained). Every evaluation is a cached
artifact keyed by the model, the dataset, the evaluator and the seed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from wcse.data import prompts
from wcse.evaluate import Evaluator
from wcse.judging import run_judge
from wcse.roles import ROLES
from wcse.stages.base import Inputs, RunContext, Stage, plain
from wcse.stages.dataset import Dataset
from wcse.stages.train import Trained

log = logging.getLogger(__name__)


class Scores:
    """Cached evaluations of models on the run's dataset (and transfer set)."""

    def __init__(self, ctx: RunContext, inputs: Inputs) -> None:
        self.ctx = ctx
        judge = run_judge(ctx, inputs["pretrain"])
        self.judge = judge if judge is not None and judge.judges_steps else None
        datasets = inputs["dataset"]
        self.evaluators = {
            d.group: Evaluator(ctx.cfg, d, self.judge) for d in (datasets.main, datasets.transfer) if d is not None
        }

    def evaluation(
        self,
        label: str,
        model_path: str,
        model_id: str,
        split: str | None = None,
        group: str = "dataset",
        attn_implementation: str | None = None,
        few_shot: bool = False,
        chat: bool = False,
    ) -> dict[str, Any]:
        """A model's scores on a split of the dataset, or (``group="transfer"``) of the transfer set;
        ``chat``: prompted in its chat template (a ``trainer.format=chat`` finetune)."""
        evaluator = self.evaluators[group]
        dataset: Dataset = evaluator.dataset
        split = split or ("test" if group == "transfer" else self.ctx.cfg.evaluator.split)
        payload = {
            "model": model_id,
            "dataset": dataset.id,
            "evaluator": plain(self.ctx.cfg.evaluator) | {"split": split},
            "seed": self.ctx.cfg.seed,
            "v": 2,
        }
        if self.judge is not None:  # its FPR comes from the judge
            payload["judge"] = self.judge.identity
        if attn_implementation is not None:  # an explicit one (absent by default, so keys stay)
            payload["attn_implementation"] = attn_implementation
        if few_shot:  # as above: zero-shot keys stay as they were
            payload["few_shot"] = True
        if chat:  # as above
            payload["chat"] = True

        def build(out: Path) -> None:
            result = evaluator.score(model_path, model_id, out, split, attn_implementation, few_shot, chat)
            (out / "result.json").write_text(json.dumps(result, indent=1))

        path = self.ctx.cache.get_or_build("evaluate", payload, build, label=label)
        return json.loads((path / "result.json").read_text()) | {"dir": str(path)}  # samples.jsonl, verdicts.jsonl

    def scored(
        self, label: str, model_path: str, model_id: str, attn_implementation: str | None = None, few_shot: bool = False,
        chat: bool = False,
    ) -> dict[str, Any]:
        """A model's test scores, with its scores on the transfer set (if any) under ``"transfer"``."""
        result = self.evaluation(label, model_path, model_id, attn_implementation=attn_implementation, few_shot=few_shot, chat=chat)
        if "transfer" in self.evaluators:
            name = self.ctx.cfg.transfer.name
            transfer = self.evaluation(
                f"{label} ({name})", model_path, model_id, group="transfer", attn_implementation=attn_implementation,
                few_shot=few_shot, chat=chat,
            )
            result["transfer"] = {"name": name, **transfer}
        return result

    def selected(self, runs: tuple[Trained, ...]) -> tuple[Trained, dict[str, Any]]:
        """The finetune and checkpoint best on validation, over every learning rate of the grid
        (ties: the later step, then the earlier rate of the grid). One rate without checkpoints
        or a validation split: its final weights, unscored."""
        first = runs[0]
        has_validation = bool(self.evaluators["dataset"].dataset.splits["validation"])
        if len(runs) > 1 and not has_validation:
            raise ValueError(f"trainer.lr_grid: a rate is chosen on validation, and {self.ctx.cfg.dataset.name} has no validation split")
        if len(runs) == 1 and not (first.metrics().get("checkpoints") and has_validation):
            reason = "no checkpoints" if not first.metrics().get("checkpoints") else "no validation split"
            final = {"step": first.metrics()["steps"], "path": str(first.path / "model"), "learning_rate": first.learning_rate}
            return first, {"best": final, "checkpoints": [], "reason": reason}
        target = self.ctx.cfg.setup.target
        scored = []
        for run in runs:
            metrics = run.metrics()
            candidates = metrics.get("checkpoints") or [{"step": metrics["steps"], "path": "model"}]
            for c in candidates:
                folder = run.path / c["path"]
                result = self.evaluation(
                    f"{target} on {run.arm} data, lr {run.learning_rate:g}, step {c['step']} (validation)",
                    str(folder),
                    f"trained@{run.path.name}/step-{c['step']}",
                    split="validation",
                    attn_implementation=run.payload["attn_implementation"],
                    chat=run.payload["trainer"]["format"] == "chat",
                )
                scored.append(
                    {"step": c["step"], "path": str(folder), "validation_pass@1": result["pass@1"], "learning_rate": run.learning_rate}
                )
        best = max(scored, key=lambda c: (c["validation_pass@1"], c["step"]))
        chosen = next(run for run in runs if run.learning_rate == best["learning_rate"])
        log.info("%s on %s data: best checkpoint lr %g step %d (validation pass@1 %.3f) of %d",
                 target, first.arm, best["learning_rate"], best["step"], best["validation_pass@1"], len(scored))
        return chosen, {"best": best, "checkpoints": scored}


def wc_minus_se(by_arm: dict[str, float]) -> float | None:
    return by_arm["wc"] - by_arm["se"] if {"wc", "se"} <= by_arm.keys() else None


def plan(ctx: RunContext, inputs: Inputs) -> None:
    return None


def build(ctx: RunContext, inputs: Inputs, _: None) -> dict[str, Any]:
    cfg, models = ctx.cfg, inputs["pretrain"]
    target, pair = cfg.setup.target, cfg.model_pair
    scores = Scores(ctx, inputs)
    shots = prompts.template(cfg.dataset.prompt).shots
    base, zero_shot = {}, {}
    for role in dict.fromkeys([target, *cfg.evaluator.baselines]):
        where = (models.path(role, target=True), models.id(role, target=True), models.spec(role).attn_implementation)
        base[role] = scores.scored(f"{role} (base, {shots}-shot)", *where, few_shot=shots > 0)
        if shots:
            zero_shot[role] = scores.evaluation(f"{role} (base, zero-shot)", *where[:2], attn_implementation=where[2])
    arms = {}
    for arm, runs in inputs["train"].items():
        run, selection = scores.selected(runs)
        best = selection["best"]
        result = scores.scored(
            f"{target} on {arm} data", best["path"], f"trained@{run.path.name}/step-{best['step']}", run.payload["attn_implementation"],
            chat=run.payload["trainer"]["format"] == "chat",
        )
        arms[arm] = {"paradigm": cfg.setup.paradigm.get(arm), "checkpoint_selection": selection, **result}
    by_arm = {arm: r["pass@1"] for arm, r in arms.items()}
    transfer = {arm: r["transfer"]["pass@1"] for arm, r in arms.items() if "transfer" in r}
    return {
        "models": {
            role: {
                "name": pair[role].name,
                "params": pair[role].params,
                **({"base": base[role]} if role in base else {}),
                **({"base_zero_shot": zero_shot[role]} if role in zero_shot else {}),
            }
            for role in ROLES
        },
        "finetune": {
            "setup": cfg.setup.name,
            "setup_label": cfg.setup.label,
            "target": target,
            "target_model": pair[target].name,
            "base_pass@1": base[target]["pass@1"],
            "base_zero_shot_pass@1": zero_shot[target]["pass@1"] if target in zero_shot else None,
            "arms": arms,
            "best_arm": max(by_arm, key=by_arm.get) if by_arm else None,
            "wc_minus_se_pass@1": wc_minus_se(by_arm),
            **({"wc_minus_se_transfer_pass@1": wc_minus_se(transfer)} if transfer else {}),
        },
    }


STAGE = Stage(
    name="evaluate",
    needs=("pretrain", "dataset", "train"),
    output="pass@1 and maj@k of the base models and of each arm's best checkpoint: `<cache>/evaluate/<key>/`",
    plan=plan,
    build=build,
)
