"""Stage ``metrics``: coverage, diversity and false-positive rate of each model's data (the
paper's section 2.1), overall, per level and per subject, and a per-problem table in the run
directory (``metrics/{wc,se}.problems.jsonl``). On real data a "steps" judge, when configured,
gives the FPR of a seeded subset of correct samples, its verdicts listed by sample key in
``metrics/{wc,se}.steps_judged.jsonl`` (what ``python -m wcse.label export`` puts beside the human
labels); the toy world's is exact.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from wcse.judging import run_judge
from wcse.metrics import data_metrics, per_problem
from wcse.records import StepJudgement, write_jsonl
from wcse.stages.base import Inputs, RunContext, Stage

log = logging.getLogger(__name__)


def plan(ctx: RunContext, inputs: Inputs) -> None:
    return None


def build(ctx: RunContext, inputs: Inputs, _: None) -> dict[str, Any]:
    dataset = inputs["dataset"].main
    train = dataset.splits["train"]
    groups = {"level": {p.id: p.level for p in train}, "subject": {p.id: p.subject for p in train}}
    problems = dataset.by_id("train")
    rules = list(ctx.cfg.verifier.diversity_rules)
    judge = run_judge(ctx, inputs["pretrain"])
    out = {}
    for role, sample_set in inputs["sample"].sets.items():
        samples, verdicts = sample_set.load(), inputs["verify"][role].verdicts()
        judged_table = None
        if judge is not None and judge.judges_steps:
            exact = [v.steps_correct for v in verdicts]
            verdicts = judge.steps(samples, verdicts, problems, dataset.id)
            judged_table = ctx.run_dir / "metrics" / f"{role}.steps_judged.jsonl"
            judged = [
                StepJudgement(v.key, v.steps_correct, judge.identity["model"])
                for v, before in zip(verdicts, exact, strict=True)
                if before is None and v.steps_correct is not None  # judged, and the reply parsed
            ]
            write_jsonl(judged_table, judged)
            log.info("metrics [%s]: the steps judge's verdicts -> %s", role, judged_table)
        samples_of = Counter(v.problem_id for v in verdicts)
        k = min(sample_set.per_problem, *samples_of.values())  # adaptive sets: some problems have fewer
        out[role] = data_metrics(samples, verdicts, k, groups=groups, rules=rules)
        table = ctx.run_dir / "metrics" / f"{role}.problems.jsonl"
        write_jsonl(table, per_problem(samples, verdicts, k, rules=rules))
        out[role]["per_problem_table"] = str(table)
        out[role]["steps_judged_table"] = None if judged_table is None else str(judged_table)
        log.info("metrics [%s]: per-problem table -> %s", role, table)
    return {"data": out}


STAGE = Stage(
    name="metrics",
    needs=("pretrain", "dataset", "sample", "verify"),
    output="coverage, diversity and FPR of each model's data; per-problem tables in `<run_dir>/metrics/`",
    plan=plan,
    build=build,
)
