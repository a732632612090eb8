"""Stage ``verify``: ground-truth verdicts for every sample, and the SFT rows the filter keeps.

The verdicts always come from the ground truth (the data metrics need them); what is kept
depends on ``verifier.method``: the correct samples (``answer``), the correct samples whose
every step is right (``process``: exact in the toy world, the "steps" judge on real data), those
an LLM judge accepts without seeing the ground truth (``judge``, label-free), or every sample
(``none``). Kept samples that overlap the dataset's validation or test split
(:mod:`wcse.data.decontaminate`) are listed in ``decontaminated.jsonl`` and dropped
(``decontaminate.drop``); those overlapping a transfer set are counted, not dropped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wcse.artifacts import digest
from wcse.data import prompts
from wcse.data.decontaminate import Index
from wcse.errors import ConfigError
from wcse.judging import run_judge
from wcse.records import Sample, Verdict, read_jsonl, write_jsonl
from wcse.stages.base import Inputs, RunContext, Stage
from wcse.stages.sample import SampleSet
from wcse.summary import Rate
from wcse.verify import judge as judge_lib
from wcse.verify.verifier import verify_samples, verify_settings


@dataclass(frozen=True)
class Filtered:
    """One sample set's verdicts and kept SFT rows: ``<cache>/verify/<key>/``."""

    role: str
    path: Path

    def verdicts(self) -> list[Verdict]:
        return list(read_jsonl(self.path / "verdicts.jsonl", Verdict))

    def judged(self) -> list[Verdict] | None:
        """The label-free judge's decisions (``verifier.method=judge``), else None."""
        path = self.path / "judged.jsonl"
        return list(read_jsonl(path, Verdict)) if path.is_file() else None

    def sft_rows(self) -> list[dict[str, Any]]:
        with open(self.path / "sft.jsonl", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh]

    def decontaminated(self) -> int | None:
        """Kept samples that overlapped an evaluation split (None: not checked)."""
        path = self.path / "decontaminated.jsonl"
        return sum(1 for _ in open(path, encoding="utf-8")) if path.is_file() else None


def process_keep(verdicts: list[Verdict]) -> list[bool]:
    """The process filter: a right final answer and every step known right (unchecked is not kept)."""
    return [v.correct and v.steps_correct is True for v in verdicts]


def step_verdicts(ctx: RunContext, inputs: Inputs, samples: list[Sample], verdicts: list[Verdict]) -> list[Verdict]:
    """The verdicts with every correct sample's reasoning checked (the process filter): the toy
    world's checker did it already; on real data the "steps" judge checks what it did not."""
    if all(v.steps_correct is not None for v in verdicts if v.correct):
        return verdicts
    judge = run_judge(ctx, inputs["pretrain"])
    if judge is None or not judge.judges_steps:
        raise ConfigError(
            "verifier.method=process: this dataset has no exact step checker; configure a steps judge "
            "(verifier.judge, prompt steps, max_samples: null) to check every correct sample's reasoning"
        )
    return judge.steps(samples, verdicts, inputs["dataset"].main.by_id("train"), inputs["dataset"].main.id)


def decontamination(ctx: RunContext) -> dict[str, Any] | None:
    """How the kept samples are checked against the dataset's own evaluation splits, for the
    cache key (the dataset is the samples'; None: not checked). A transfer set is not in it: its
    overlaps are counted each run, never dropped, so adding one rebuilds nothing."""
    d = ctx.cfg.decontaminate
    return {"ngram": d.ngram, "min_coverage": d.min_coverage, "drop": d.drop} if d.enabled else None


def payload(ctx: RunContext, samples: SampleSet, judge_identity: dict[str, Any] | None) -> dict[str, Any]:
    v = ctx.cfg.verifier
    return {
        "key": digest(
            {
                "samples": samples.identity(),
                "method": v.method,
                "mode": v.mode,
                "timeout_s": v.timeout_s,
                "judge": judge_identity if v.method == "judge" else None,
                **({"keep_truncated": True} if v.keep_truncated else {}),  # absent by default: keys stay
                "decontaminate": decontamination(ctx),
                "v": 3,  # 3: SFT rows carry the sample index
            }
        )
    }


def filtered(ctx: RunContext, inputs: Inputs, samples: SampleSet) -> Filtered:
    judge = run_judge(ctx, inputs["pretrain"]) if ctx.cfg.verifier.method == "judge" else None
    return Filtered(samples.role, ctx.cache.path("verify", payload(ctx, samples, judge and judge.identity)))


def ensure(ctx: RunContext, inputs: Inputs, samples: SampleSet) -> Filtered:
    """Verify ``samples`` (and filter them) unless the artifact exists."""
    v, dataset = ctx.cfg.verifier, inputs["dataset"].main
    judge = run_judge(ctx, inputs["pretrain"]) if v.method == "judge" else None

    def build(out: Path) -> None:
        done = samples.load()
        problems = dataset.by_id("train")
        verdicts = verify_samples(
            dataset.cfg.format, problems, done, v.mode, desc=f"verify {samples.role}", **verify_settings(ctx.cfg)
        )
        write_jsonl(out / "verdicts.jsonl", verdicts)
        if judge is not None:
            judged = judge_lib.label_free_verdicts(done, judge.judge(done, problems, dataset.id))
            write_jsonl(out / "judged.jsonl", judged)
            keep = [verdict.correct for verdict in judged]
        elif v.method == "process":
            keep = process_keep(step_verdicts(ctx, inputs, done, verdicts))
        else:
            keep = [v.method == "none" or verdict.correct for verdict in verdicts]
        kept = [
            {
                "prompt": prompts.zero_shot(dataset.cfg.prompt, problems[s.problem_id]),
                "completion": " " + s.response.strip(),
                "problem_id": s.problem_id,
                "index": s.index,  # sample j of the problem: budget-matched mixes take a prefix
            }
            for s, k in zip(done, keep, strict=True)
            if k and (s.finished or v.keep_truncated)  # a cut-off solution is no SFT target
        ]
        if (d := ctx.cfg.decontaminate).enabled:
            kept, flagged = decontaminated(kept, inputs["dataset"].index("dataset", d.ngram, d.min_coverage), d.drop)
            write_rows(out / "decontaminated.jsonl", flagged)
        write_rows(out / "sft.jsonl", kept)

    path = ctx.cache.get_or_build("verify", payload(ctx, samples, judge and judge.identity), build, label=samples.role)
    return Filtered(samples.role, path)


def decontaminated(rows: list[dict[str, Any]], index: Index, drop: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the SFT rows to keep, those whose completion overlaps an evaluation item, with the match)."""
    matches = [index.match(row["completion"]) for row in rows]
    flagged = [row | {"against": m.against, "shared": m.text, "coverage": m.coverage} for row, m in zip(rows, matches, strict=True) if m]
    return ([row for row, m in zip(rows, matches, strict=True) if m is None] if drop else rows), flagged


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)


def kept_false_positives(rows: list[dict[str, Any]], verdicts: list[Verdict]) -> Rate | None:
    """The share of kept samples with a right answer whose reasoning is known to be wrong, over
    the kept samples whose reasoning was checked: the FPR after the filter (before it: the data
    metrics' ``fpr``). None where no reasoning was checked (real data without a steps judge)."""
    steps = {(v.problem_id, v.index): v.steps_correct for v in verdicts if v.correct}
    checked = [steps[key] for row in rows if (key := (row["problem_id"], row["index"])) in steps and steps[key] is not None]
    return Rate.of(checked.count(False), len(checked)) if checked else None


def plan(ctx: RunContext, inputs: Inputs) -> dict[str, Filtered]:
    return {role: filtered(ctx, inputs, s) for role, s in inputs["sample"].sets.items()}


def missing(ctx: RunContext, out: dict[str, Filtered]) -> list[str]:
    return [f"{role} verdicts at {f.path}" for role, f in out.items() if not ctx.cache.valid(f.path)]


def build(ctx: RunContext, inputs: Inputs, out: dict[str, Filtered]) -> dict[str, Any]:
    d = ctx.cfg.decontaminate
    transfer = inputs["dataset"].index("transfer", d.ngram, d.min_coverage) if d.enabled else None
    section: dict[str, Any] = {}
    for role, samples in inputs["sample"].sets.items():
        f = ensure(ctx, inputs, samples)
        verdicts = f.verdicts()
        section[role] = {
            "verified": len(verdicts),
            "correct": sum(v.correct for v in verdicts),
            "truncated": sum(not s.finished for s in samples.load()),
            "kept_truncated": ctx.cfg.verifier.keep_truncated,
            "kept_for_training": len(rows := f.sft_rows()),
            "kept_false_positives": kept_false_positives(rows, verdicts),
            "decontaminated": f.decontaminated(),
            "decontaminated_transfer": None if transfer is None else sum(transfer.match(r["completion"]) is not None for r in rows),
            "status": dict(sorted(Counter(v.status for v in verdicts).items())),
        }
        judged = f.judged()
        if judged is not None:  # label-free: how often the judge kept a wrong sample / dropped a right one
            accepted, truth = [j.correct for j in judged], [v.correct for v in verdicts]
            section[role]["judge"] = {
                "kept_wrong": sum(a and not t for a, t in zip(accepted, truth, strict=True)),
                "dropped_right": sum(t and not a for a, t in zip(accepted, truth, strict=True)),
            }
    return {"filter": {"method": ctx.cfg.verifier.method, "mode": ctx.cfg.verifier.mode, "models": section}}


STAGE = Stage(
    name="verify",
    needs=("pretrain", "dataset", "sample"),
    output="verdicts of every sample and the SFT rows the filter keeps: `<cache>/verify/<key>/{verdicts,sft}.jsonl`",
    plan=plan,
    build=build,
    missing=missing,
    how="add 'verify' to stages",
)
