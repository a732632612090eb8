"""pass@1 and maj@k of a model on a split: the paper's zero-shot evaluation of finetuned models,
and the few-shot evaluation of base models (which zero-shot rarely answer in the graded format).
On IFEval, pass@1 is its prompt-level strict accuracy, and the other three of its accuracies
are reported beside it (``ifeval``).

Greedy decoding gives one sample per problem and pass@1 is its accuracy. Sampled evaluation
draws ``n`` samples per problem (the paper: temperature 0.7): pass@1 is then their mean
accuracy, and maj@k the accuracy of the majority answer of k samples, averaged over the n // k
disjoint groups of k samples each problem has (every sample used once, none twice). Votes go to
the extracted answer as written; a tie goes to the answer given first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from transformers import AutoTokenizer

from wcse.data import prompts
from wcse.records import Problem, Sample, Verdict, write_jsonl
from wcse.sampling.backends import open_sampler
from wcse.sampling.store import SampleRequest
from wcse.stats import wilson_interval
from wcse.summary import Rate
from wcse.train.sft import chat_prompt
from wcse.verify.verifier import verify_samples, verify_settings


def eval_requests(
    model_id: str,
    dataset_id: str,
    prompt_id: str,
    problems: Sequence[Problem],
    params: dict[str, Any],
    seed: int,
    n: int = 1,
    few_shot: bool = False,
    chat_tokenizer: Any = None,
) -> list[SampleRequest]:
    """``n`` requests per problem (sample indices 0..n-1): zero-shot, or with the prompt file's
    exemplars (how a base model's own ability is measured, as it is sampled); with
    ``chat_tokenizer``, the zero-shot prompt as a user turn of its chat template (a chat-format finetune)."""
    render = prompts.few_shot if few_shot else prompts.zero_shot
    return [
        SampleRequest.create(
            model=model_id,
            dataset=dataset_id,
            problem_id=p.id,
            index=j,
            prompt=render(prompt_id, p) if chat_tokenizer is None else chat_prompt(chat_tokenizer, render(prompt_id, p)),
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
        "maj": {str(k): maj_at_k(by_problem, k) for k in maj_ks},
        "per_level": {k: Rate.of(sum(c), len(c)).model_dump() for k, c in sorted(by_level.items())},
        "per_subject": {k: Rate.of(sum(c), len(c)).model_dump() for k, c in sorted(by_subject.items())},
        "fpr": Rate.of(sum(not v.steps_correct for v in checked), len(checked)).model_dump(),
        "status": {s: sum(v.status == s for v in verdicts) for s in sorted({v.status for v in verdicts})},
    }


class Evaluator:
    """Scores a model on a split of one dataset: zero-shot (or few-shot) requests, generation, lenient
    verification, pass@1 / maj@k and, where a "steps" judge is configured and no exact checker
    is, the FPR of the model's correct answers.

    The model's engine is closed before the judge runs, so two models never hold the
    accelerator at once. Finetuned targets are local models: a run that samples through an API
    (``sampler=openai``) evaluates them with the hf backend.
    """

    def __init__(self, cfg: Any, dataset: Any, judge: Any | None = None) -> None:
        self.cfg, self.dataset, self.judge = cfg, dataset, judge
        e = cfg.evaluator
        self.params = {
            "temperature": e.temperature,
            "top_p": 1.0,
            "max_new_tokens": e.max_new_tokens,
            **prompts.stop_params(dataset.cfg.prompt),
        }
        backend = "hf" if cfg.sampler.backend == "openai" else cfg.sampler.backend
        self.sampler_cfg = OmegaConf.merge(cfg.sampler, {"backend": backend})

    def split_format(self, split: str) -> str:
        """The format a split's problems are read and checked in: its own (MBPP's test split is
        HumanEval, OASST1's is IFEval) or the dataset's."""
        source = self.dataset.cfg.get(split)
        return (source.get("format") if source is not None else None) or self.dataset.cfg.format

    def problems(self, split: str) -> list[Problem]:
        problems = self.dataset.splits[split]
        limit = self.cfg.evaluator.limit
        return problems[:limit] if limit else problems

    def score(
        self,
        model_path: str,
        model_id: str,
        out_dir: Path,
        split: str,
        attn_implementation: str | None = None,
        few_shot: bool = False,
        chat: bool = False,
    ) -> dict[str, Any]:
        """Generate, verify and score; the raw outputs stay in ``out_dir`` for inspection. ``chat``:
        prompts in the model's chat template (how a ``trainer.format=chat`` finetune was trained)."""
        e = self.cfg.evaluator
        problems = self.problems(split)
        tokenizer = AutoTokenizer.from_pretrained(model_path) if chat else None
        requests = eval_requests(
            model_id, self.dataset.id, self.dataset.cfg.prompt, problems, self.params, self.cfg.seed, e.samples, few_shot, tokenizer
        )
        with open_sampler(self.sampler_cfg, model_path, batch_size=e.batch_size, attn_implementation=attn_implementation) as sampler:
            samples: list[Sample] = sampler.generate(requests)
        by_id = {p.id: p for p in problems}
        verdicts = verify_samples(self.split_format(split), by_id, samples, "lenient", desc="evaluate", **verify_settings(self.cfg))
        if self.judge is not None and self.judge.judges_steps:
            verdicts = self.judge.steps(samples, verdicts, by_id, self.dataset.id)
        write_jsonl(out_dir / "samples.jsonl", samples)
        write_jsonl(out_dir / "verdicts.jsonl", verdicts)
        result = score(problems, verdicts, e.maj_ks)
        if any("instruction_id_list" in p.meta for p in problems):  # IFEval: its four accuracies beside pass@1
            from wcse.verify import ifeval  # NLTK and SciPy only where there is an instruction to score

            records, result["ifeval"] = ifeval.score((by_id[s.problem_id], s.response) for s in samples)
            write_jsonl(out_dir / "ifeval.jsonl", records)
        return result
