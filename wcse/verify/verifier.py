"""Turn samples into verdicts: exact step checking in the toy world, answer checks elsewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tqdm.auto import tqdm

from wcse.records import Problem, Sample, Verdict
from wcse.toy import world
from wcse.verify import answers

ANSWER_FORMATS = ("gsm8k", "math", "functional_math")
CODE_FORMATS = ("mbpp", "humaneval")


def verify_one(fmt: str, problem: Problem, sample: Sample, mode: str) -> Verdict:
    """One verdict. ``steps_correct`` is exact in the toy world and None elsewhere (unknown)."""
    if fmt == "toy_arith":
        check = world.check_solution(sample.text, problem.meta, problem.answer)
        return Verdict(
            key=sample.key,
            problem_id=sample.problem_id,
            index=sample.index,
            extracted=check.extracted,
            correct=check.answer_correct,
            steps_correct=check.steps_correct,
            status=check.status,
        )
    if fmt in ANSWER_FORMATS:
        correct, extracted, status = answers.check(fmt, sample.text, problem.answer, mode)
        return Verdict(sample.key, sample.problem_id, sample.index, extracted, correct, None, status)
    if fmt in CODE_FORMATS:
        raise NotImplementedError(
            f"dataset format {fmt!r}: verifying code needs the execution sandbox, which is not built yet"
        )
    raise ValueError(f"dataset format {fmt!r}: no verifier; known: toy_arith, {', '.join(ANSWER_FORMATS)}")


def verify_samples(
    fmt: str, problems: Mapping[str, Problem], samples: Sequence[Sample], mode: str = "strict", desc: str = "verify"
) -> list[Verdict]:
    """Verdicts for ``samples`` in order; a sample of an unknown problem is an error naming its key."""
    verdicts = []
    for sample in tqdm(samples, desc=desc, unit="sample", leave=False):
        problem = problems.get(sample.problem_id)
        if problem is None:
            raise ValueError(f"sample {sample.key}: problem {sample.problem_id!r} is not in the dataset")
        verdicts.append(verify_one(fmt, problem, sample, mode))
    return verdicts
