"""pass@1 of a model on a split: the paper's zero-shot evaluation of finetuned models."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wcse.data import prompts
from wcse.metrics import Rate, wilson_interval
from wcse.records import Problem, Sample, Verdict, write_jsonl
from wcse.sampling.store import SampleRequest
from wcse.verify.verifier import verify_samples


def eval_requests(
    model_id: str, dataset_id: str, prompt_id: str, problems: Sequence[Problem], params: dict[str, Any], seed: int
) -> list[SampleRequest]:
    """One zero-shot request per problem (sample index 0)."""
    return [
        SampleRequest.create(
            model=model_id,
            dataset=dataset_id,
            problem_id=p.id,
            index=0,
            prompt=prompts.zero_shot(prompt_id, p),
            params=params,
            base_seed=seed,
        )
        for p in problems
    ]


def score(problems: Sequence[Problem], verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """pass@1 overall and per level, and the FPR of the model's own correct answers."""
    level_of = {p.id: p.level for p in problems}
    by_level: dict[str, list[bool]] = defaultdict(list)
    for v in verdicts:
        by_level[str(level_of[v.problem_id])].append(v.correct)
    checked = [v for v in verdicts if v.correct and v.steps_correct is not None]
    n_correct = sum(v.correct for v in verdicts)
    return {
        "n": len(verdicts),
        "pass@1": n_correct / max(1, len(verdicts)),
        "pass@1_interval": list(wilson_interval(n_correct, len(verdicts))),
        "per_level": {k: sum(c) / len(c) for k, c in sorted(by_level.items())},
        "fpr": Rate.of(sum(not v.steps_correct for v in checked), len(checked)).to_dict(),
        "status": {s: sum(v.status == s for v in verdicts) for s in sorted({v.status for v in verdicts})},
    }


def evaluate(
    sampler: Any,
    requests: Sequence[SampleRequest],
    problems: Sequence[Problem],
    fmt: str,
    out_dir: Path,
    **verify_settings: Any,
) -> dict[str, Any]:
    """Generate, verify (lenient, as for evaluation) and score; keep the raw outputs for inspection.

    ``verify_settings``: the verifier pool's (wcse.verify.verifier.check_all).
    """
    samples: list[Sample] = sampler.generate(requests)
    verdicts = verify_samples(fmt, {p.id: p for p in problems}, samples, "lenient", desc="evaluate", **verify_settings)
    write_jsonl(out_dir / "samples.jsonl", samples)
    write_jsonl(out_dir / "verdicts.jsonl", verdicts)
    return score(problems, verdicts)
