"""pass@1 and maj@k of a model on a split: the paper's zero-shot evaluation of finetuned models.

Greedy decoding gives one sample per problem and pass@1 is its accuracy. Sampled evaluation
draws ``n`` samples per problem (the paper: temperature 0.7): pass@1 is then their mean
accuracy, and maj@k the accuracy of the majority answer of k samples, averaged over the n // k
disjoint groups of k samples each problem has (every sample used once, none twice). Votes go to
the extracted answer as written; a tie goes to the answer given first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from wcse.data import prompts
from wcse.metrics import Rate, wilson_interval
from wcse.records import Problem, Sample, Verdict, write_jsonl
from wcse.sampling.store import SampleRequest
from wcse.verify.verifier import verify_samples


def eval_requests(
    model_id: str,
    dataset_id: str,
    prompt_id: str,
    problems: Sequence[Problem],
    params: dict[str, Any],
    seed: int,
    n: int = 1,
) -> list[SampleRequest]:
    """``n`` zero-shot requests per problem (sample indices 0..n-1)."""
    return [
        SampleRequest.create(
            model=model_id,
            dataset=dataset_id,
            problem_id=p.id,
            index=j,
            prompt=prompts.zero_shot(prompt_id, p),
            params=params,
            base_seed=seed,
        )
        for p in problems
        for j in range(n)
    ]


def majority_correct(verdicts: Sequence[Verdict]) -> bool:
    """Whether the most frequent extracted answer among ``verdicts`` (ties: the first) is correct."""
    answered = [v for v in verdicts if v.extracted is not None]
    if not answered:
        return False
    votes = Counter(v.extracted for v in answered)
    top = max(votes.values())
    winner = next(v for v in answered if votes[v.extracted] == top)
    return winner.correct


def maj_at_k(by_problem: Mapping[str, Sequence[Verdict]], k: int) -> float:
    """Mean over problems of the majority-vote accuracy of their disjoint groups of k samples."""
    per_problem = []
    for pid, verdicts in by_problem.items():
        groups = len(verdicts) // k
        if groups == 0:
            raise ValueError(f"maj@{k}: problem {pid!r} has only {len(verdicts)} samples")
        per_problem.append(sum(majority_correct(verdicts[g * k : (g + 1) * k]) for g in range(groups)) / groups)
    return sum(per_problem) / len(per_problem)


def score(problems: Sequence[Problem], verdicts: Sequence[Verdict], maj_ks: Sequence[int] = ()) -> dict[str, Any]:
    """pass@1 overall, per level and per subject (rates with their counts), maj@k, and the FPR of
    the model's own correct answers.

    The intervals are Wilson's over samples; with several samples per problem those are not
    independent, so the intervals are narrower than intervals over problems would be.
    """
    info = {p.id: p for p in problems}
    by_level: dict[str, list[bool]] = defaultdict(list)
    by_subject: dict[str, list[bool]] = defaultdict(list)
    by_problem: dict[str, list[Verdict]] = defaultdict(list)
    for v in sorted(verdicts, key=lambda v: v.index):
        by_level[str(info[v.problem_id].level)].append(v.correct)
        by_subject[str(info[v.problem_id].subject)].append(v.correct)
        by_problem[v.problem_id].append(v)
    checked = [v for v in verdicts if v.correct and v.steps_correct is not None]
    n_correct = sum(v.correct for v in verdicts)
    return {
        "n": len(verdicts),
        "n_problems": len(by_problem),
        "pass@1": n_correct / max(1, len(verdicts)),
        "pass@1_interval": list(wilson_interval(n_correct, len(verdicts))),
        **{f"maj@{k}": maj_at_k(by_problem, k) for k in maj_ks},
        "per_level": {k: Rate.of(sum(c), len(c)).to_dict() for k, c in sorted(by_level.items())},
        "per_subject": {k: Rate.of(sum(c), len(c)).to_dict() for k, c in sorted(by_subject.items())},
        "fpr": Rate.of(sum(not v.steps_correct for v in checked), len(checked)).to_dict(),
        "status": {s: sum(v.status == s for v in verdicts) for s in sorted({v.status for v in verdicts})},
    }


def evaluate(
    open_model: Callable[[], AbstractContextManager[Any]],
    requests: Sequence[SampleRequest],
    problems: Sequence[Problem],
    fmt: str,
    out_dir: Path,
    maj_ks: Sequence[int] = (),
    check_steps: Callable[[list[Sample], list[Verdict]], list[Verdict]] | None = None,
    **verify_settings: Any,
) -> dict[str, Any]:
    """Generate, verify (lenient, as for evaluation) and score; keep the raw outputs for inspection.

    The model's engine is closed before ``check_steps`` (an LLM judge of the reasoning behind the
    correct answers, for their FPR) runs, so two models never hold the accelerator at once.
    ``verify_settings``: the verifier pool's (wcse.verify.verifier.check_all).
    """
    with open_model() as sampler:
        samples: list[Sample] = sampler.generate(requests)
    verdicts = verify_samples(fmt, {p.id: p for p in problems}, samples, "lenient", desc="evaluate", **verify_settings)
    if check_steps is not None:
        verdicts = check_steps(samples, verdicts)
    write_jsonl(out_dir / "samples.jsonl", samples)
    write_jsonl(out_dir / "verdicts.jsonl", verdicts)
    return score(problems, verdicts, maj_ks)
