"""Turn samples into verdicts: exact step checking in the toy world, answer checks on real data,
test execution for code, IFEval's instruction checkers for instructions; in a pool of worker
processes with a time limit per sample.

An instruction (``oasst1``, ``ifeval``) is correct when the response follows every one of its
verifiable instructions, IFEval's prompt-level strict verdict (:mod:`wcse.verify.ifeval`); an
instruction without any (an OASST1 prompt) has no reference to check against: its verdicts are
``no_reference``, never correct, so only a label-free filter (``verifier=none`` or ``judge``)
keeps its samples.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wcse.records import Problem, Sample, Verdict
from wcse.toy import world
from wcse.verify import code
from wcse.verify.pool import Failure, map_with_timeout
from wcse.verify.sandbox import DEFAULT_LIMITS

ANSWER_FORMATS = ("gsm8k", "math", "functional_math")
CODE_FORMATS = code.FORMATS
INSTRUCTION_FORMATS = ("oasst1", "ifeval")
FORMATS = ("toy_arith", *ANSWER_FORMATS, *CODE_FORMATS, *INSTRUCTION_FORMATS)


@dataclass(frozen=True)
class Check:
    """What a worker sends back for one sample (the parent adds the sample's identity)."""

    extracted: str | None
    correct: bool
    steps_correct: bool | None  # exact in the toy world; None where not checkable (real data)
    status: str


def check_one(fmt: str, problem: Problem, text: str, mode: str) -> Check:
    """Judge one response to ``problem``; ``mode`` is strict (filtering) or lenient (evaluation)."""
    if fmt == "toy_arith":
        if not problem.meta:  # a bare (response, answer) row, as from ``python -m wcse.verify``
            tail = text.rpartition(world.ANSWER_MARK)[2].split() if world.ANSWER_MARK in text else []
            extracted = tail[0] if tail else None
            return Check(extracted, extracted == problem.answer, None, "ok" if tail else "no_answer")
        step_check = world.check_solution(text, problem.meta, problem.answer)
        return Check(step_check.extracted, step_check.answer_correct, step_check.steps_correct, step_check.status)
    if fmt in ANSWER_FORMATS:
        from wcse.verify import answers  # math-verify and SymPy: ~0.5 s a worker that checks no answer skips

        return Check(*_reorder(answers.check(fmt, text, problem.answer, mode)))
    if fmt in CODE_FORMATS:
        return Check(*_reorder(code.check(fmt, text, problem)))
    if fmt in INSTRUCTION_FORMATS:
        if "instruction_id_list" not in problem.meta:
            return Check(None, False, None, "no_reference")
        # Imported here, like answers above: IFEval's checkers pull in NLTK, SciPy and datasets
        # (~2.5 s), which every pool worker of every other format would import before its first item.
        from wcse.verify import ifeval

        record = ifeval.score_response(problem, text)
        return Check(None, bool(record.follow_all_strict), None, "unscorable" if record.unscorable else "ok")
    raise ValueError(f"dataset format {fmt!r}: no verifier; known: {', '.join(FORMATS)}")


def _reorder(result: tuple[bool, str | None, str]) -> tuple[str | None, bool, None, str]:
    correct, extracted, status = result
    return extracted, correct, None, status


def _check_item(fmt: str, mode: str, item: tuple[Problem, str]) -> Check:
    return check_one(fmt, item[0], item[1], mode)


@dataclass(frozen=True)
class Settings:
    """How a format is checked in the pool: code runs in a sandbox with its own wall-clock limit,
    so its items go one per task and get that limit plus start-up slack."""

    timeout_s: float
    chunk_size: int


DEFAULT_SETTINGS = {fmt: Settings(10.0, 64) for fmt in ("toy_arith", *ANSWER_FORMATS, *INSTRUCTION_FORMATS)} | {
    fmt: Settings(DEFAULT_LIMITS.timeout_s + 10.0, 1) for fmt in CODE_FORMATS
}


def check_all(
    fmt: str,
    items: Sequence[tuple[Problem, str]],
    mode: str = "strict",
    *,
    workers: int | None = None,
    timeout_s: float | None = None,
    chunk_size: int | None = None,
    desc: str = "verify",
) -> list[Check]:
    """Checks of (problem, response) pairs in order. A response that runs past ``timeout_s`` or
    crashes its worker gets status ``timeout`` / ``error`` (counted wrong) and the batch goes on.
    ``None`` settings take the format's defaults (DEFAULT_SETTINGS)."""
    if fmt not in FORMATS:
        raise ValueError(f"dataset format {fmt!r}: no verifier; known: {', '.join(FORMATS)}")
    from wcse.verify import answers  # imported where it is used, as in check_one

    if mode not in answers.MODES:
        raise ValueError(f"verify mode {mode!r}: known modes are {list(answers.MODES)}")
    defaults = DEFAULT_SETTINGS[fmt]
    checks = map_with_timeout(
        functools.partial(_check_item, fmt, mode),
        items,
        timeout_s=timeout_s or defaults.timeout_s,
        chunk_size=chunk_size or defaults.chunk_size,
        workers=workers,
        desc=desc,
    )
    return [Check(None, False, None, c.status) if isinstance(c, Failure) else c for c in checks]


def verify_samples(
    fmt: str,
    problems: Mapping[str, Problem],
    samples: Sequence[Sample],
    mode: str = "strict",
    **settings: Any,
) -> list[Verdict]:
    """Verdicts for ``samples`` in order (``settings``: those of :func:`check_all`).

    Each is graded on its :attr:`~wcse.records.Sample.response`, the text up to its first stop
    string: a sample that runs on into the next exemplar (a server that ignored ``stop``) is
    judged on its own answer, not on the exemplar's that the graders, taking the last, would find.
    """
    items = []
    for sample in samples:
        problem = problems.get(sample.problem_id)
        if problem is None:
            raise ValueError(f"sample {sample.key}: problem {sample.problem_id!r} is not in the dataset")
        items.append((problem, sample.response))
    checks = check_all(fmt, items, mode, **settings)
    return [
        Verdict(s.key, s.problem_id, s.index, c.extracted, c.correct, c.steps_correct, c.status)
        for s, c in zip(samples, checks, strict=True)
    ]


def verify_settings(cfg: Any) -> dict[str, Any]:
    """How the verifier pool runs (not what it decides), from the run config: processes, time
    limit, chunking (``None``: the format's defaults)."""
    v = cfg.verifier
    return {"workers": v.workers, "timeout_s": v.timeout_s, "chunk_size": v.chunk_size}
