"""Stage ``metrics``: coverage, diversity and false-positive rate of each model's data (the
paper's section 2.1), overall, per level and per subject, and a per-problem table in the run
directory (``metrics/{wc,se}.problems.jsonl``). On real data a "steps" judge, when configured,
gives the FPR of a seeded subset of correct samples; the toy world's is exact.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from wcse.judging import run_judge
from wcse.metrics import data_metrics, per_problem
from wcse.records import write_jsonl
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
        if judge is not None and judge.judges_steps:
            verdicts = judge.steps(samples, verdicts, problems, dataset.id)
        samples_of = Counter(v.problem_id for v in verdicts)
        k = min(sample_set.per_problem, *samples_of.values())  # adaptive sets: some problems have fewer
        out[role] = data_metrics(samples, verdicts, k, groups=groups, rules=rules)
        table = ctx.run_dir / "metrics" / f"{role}.problems.jsonl"
        write_jsonl(table, per_problem(samples, verdicts, k, rules=rules))
        out[role]["per_problem_table"] = str(table)
        log.info("metrics [%s]: per-problem table -> %s", role, table)
    return {"data": out}


STAGE = Stage(
    name="metrics",
    needs=("pretrain", "dataset", "sample", "verify"),
    output="coverage, diversity and FPR of each model's data; per-problem tables in `<run_dir>/metrics/`",
    plan=plan,
    build=build,
)
