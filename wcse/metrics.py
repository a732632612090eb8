"""Quality of synthetic data (paper section 2.1): coverage@k, diversity@k and false positive rate.

Coverage and diversity are computed from all M samples of a problem with unbiased estimators of
"draw k of them": reading them off the first k samples only would waste the other M - k and add
noise. The FPR carries a Wilson interval because it rests on the few samples whose reasoning
could be checked.

What counts as "a unique solution" is a pluggable rule (UNIQUENESS_RULES): ``exact`` treats
solutions that differ only in case or spacing as one; ``computation`` treats solutions that
compute the same values in the same order as one, however they are worded, so a paraphrase
does not count as a new way of solving the problem.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from wcse.records import Sample, Verdict
from wcse.summary import Rate


def normalize_text(text: str) -> str:
    """Solutions that differ only in case or spacing are one solution, not two."""
    return " ".join(text.lower().split())


_NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def computation_signature(text: str) -> tuple[str, ...]:
    """The distinct numbers a solution writes, in order of first appearance ("1,000" = "1000.0").

    Two solutions with one signature computed the same intermediate values in the same order:
    one line of reasoning in different words. Another order or other intermediate values is
    another solution.
    """
    values = (format(Decimal(m.group().replace(",", "")).normalize(), "f") for m in _NUMBER.finditer(text))
    return tuple(dict.fromkeys(values))


UNIQUENESS_RULES: dict[str, Callable[[str], Hashable]] = {
    "exact": normalize_text,
    "computation": computation_signature,
}


def _check_k(n: int, k: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")


def coverage_at_k(n: int, c: int, k: int) -> float:
    """P(a random k-subset of n samples holds at least one of the c correct ones): the unbiased
    pass@k estimator, ``1 - C(n-c, k) / C(n, k)`` (math.comb is 0 when n - c < k)."""
    _check_k(n, k)
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def diversity_at_k(
    correct_texts: Sequence[str], n: int, k: int, normalize: Callable[[str], Hashable] = normalize_text
) -> float:
    """Expected number of unique correct solutions in a random k-subset of one problem's n samples.

    By linearity of expectation it is the sum, over unique solutions u with multiplicity m_u, of
    P(u is drawn), which is coverage@k with c = m_u.
    """
    _check_k(n, k)
    if len(correct_texts) > n:
        raise ValueError(f"{len(correct_texts)} correct texts but only n={n} samples")
    counts = Counter(normalize(text) for text in correct_texts)
    return sum(coverage_at_k(n, m, k) for m in counts.values())


@dataclass
class _Problem:
    """One problem's judged samples, reduced to what the metrics need."""

    n: int = 0
    correct_texts: list[str] = field(default_factory=list)
    steps: list[bool] = field(default_factory=list)  # steps_correct of correct samples, where known


def _rules(names: Sequence[str]) -> dict[str, Callable[[str], Hashable]]:
    unknown = [name for name in names if name not in UNIQUENESS_RULES]
    if unknown or not names:
        raise ValueError(f"diversity rules {list(names)}: known rules are {list(UNIQUENESS_RULES)}")
    return {name: UNIQUENESS_RULES[name] for name in names}


def _mean_coverage(problems: Sequence[_Problem], k: int) -> float:
    return sum(coverage_at_k(p.n, len(p.correct_texts), k) for p in problems) / len(problems)


def _summary(problems: Sequence[_Problem], k: int, rules: Mapping[str, Callable[[str], Hashable]]) -> dict[str, Any]:
    n_samples = sum(p.n for p in problems)
    n_correct = sum(len(p.correct_texts) for p in problems)
    steps = [ok for p in problems for ok in p.steps]
    diversity = {
        name: sum(diversity_at_k(p.correct_texts, p.n, k, rule) for p in problems) / len(problems)
        for name, rule in rules.items()
    }
    return {
        "k": k,
        "n_problems": len(problems),
        "n_samples": n_samples,
        "n_correct": n_correct,
        "accuracy": n_correct / n_samples,
        "coverage": _mean_coverage(problems, k),
        "solved": sum(bool(p.correct_texts) for p in problems) / len(problems),  # coverage at each problem's own count
        "diversity": next(iter(diversity.values())),  # the first rule is the headline figure
        "diversity_by_rule": diversity,
        "fpr": Rate.of(steps.count(False), len(steps)).model_dump(),
    }


def _judged_problems(samples: Sequence[Sample], verdicts: Sequence[Verdict], k: int) -> dict[str, _Problem]:
    """Verdicts grouped by problem, each checked against its sample; every problem needs >= k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    by_key: dict[str, Sample] = {}
    for sample in samples:
        if sample.key in by_key:
            raise ValueError(f"duplicate sample key {sample.key!r}")
        by_key[sample.key] = sample
    problems: dict[str, _Problem] = defaultdict(_Problem)
    seen: set[str] = set()
    for verdict in verdicts:
        sample = by_key.get(verdict.key)
        if sample is None:
            raise ValueError(f"verdict {verdict.key!r} has no sample")
        if verdict.key in seen:
            raise ValueError(f"duplicate verdict for sample {verdict.key!r}")
        if sample.problem_id != verdict.problem_id:
            raise ValueError(
                f"verdict {verdict.key!r} is for problem {verdict.problem_id!r}, "
                f"its sample for {sample.problem_id!r}"
            )
        seen.add(verdict.key)
        problem = problems[verdict.problem_id]
        problem.n += 1
        if verdict.correct:
            problem.correct_texts.append(sample.response)
            if verdict.steps_correct is not None:
                problem.steps.append(verdict.steps_correct)
    if not problems:
        raise ValueError("no verdicts to measure")
    for pid, problem in problems.items():
        if problem.n < k:
            raise ValueError(f"problem {pid!r} has {problem.n} samples, fewer than k={k}")
    return dict(problems)


def data_metrics(
    samples: Sequence[Sample],
    verdicts: Sequence[Verdict],
    k: int,
    groups: Mapping[str, Mapping[str, Hashable]] | None = None,
    curve_ks: Sequence[int] | None = None,
    rules: Sequence[str] = ("exact", "computation"),
) -> dict[str, Any]:
    """Coverage, diversity (per uniqueness rule) and FPR of a judged sample set, overall and per group.

    The verdicts define the population (M per problem); ``samples`` may hold more, and supply the
    texts that decide uniqueness. ``groups`` maps a grouping's name (``level``, ``subject``) to
    problem id -> value; each grouping adds a ``per_<name>`` breakdown.
    """
    problems = _judged_problems(samples, verdicts, k)
    chosen = _rules(rules)
    m_min = min(p.n for p in problems.values())
    if curve_ks is None:
        curve_ks = [2**i for i in range(m_min.bit_length())]
        if curve_ks[-1] != m_min:
            curve_ks.append(m_min)  # the budget itself (e.g. 30) is the point the comparison is about
    for kk in curve_ks:
        if not 1 <= kk <= m_min:
            raise ValueError(f"curve k={kk} outside 1..{m_min} (the smallest per-problem sample count)")

    all_problems = list(problems.values())
    result = _summary(all_problems, k, chosen)
    result["coverage_curve"] = {str(kk): _mean_coverage(all_problems, kk) for kk in curve_ks}
    for name, value_of in (groups or {}).items():
        grouped: dict[Hashable, list[_Problem]] = defaultdict(list)
        for pid, problem in problems.items():
            if pid not in value_of:
                raise ValueError(f"problem {pid!r} has no {name}")
            grouped[value_of[pid]].append(problem)
        result[f"per_{name}"] = {
            str(value): _summary(group, k, chosen)
            for value, group in sorted(grouped.items(), key=lambda item: (item[0] is None, str(item[0])))
        }
    return result


@dataclass
class ProblemMetrics:
    """One row of the per-problem table: where the coverage and diversity come from."""

    problem_id: str
    n: int
    n_correct: int
    coverage: float
    diversity: dict[str, float]
    steps_checked: int  # correct samples whose reasoning was checked
    steps_wrong: int  # ... and found wrong (false positives)


def per_problem(
    samples: Sequence[Sample], verdicts: Sequence[Verdict], k: int, rules: Sequence[str] = ("exact", "computation")
) -> list[ProblemMetrics]:
    """Coverage@k, diversity@k and checked/false-positive counts of each problem, by problem id."""
    chosen = _rules(rules)
    return [
        ProblemMetrics(
            problem_id=pid,
            n=p.n,
            n_correct=len(p.correct_texts),
            coverage=coverage_at_k(p.n, len(p.correct_texts), k),
            diversity={name: diversity_at_k(p.correct_texts, p.n, k, rule) for name, rule in chosen.items()},
            steps_checked=len(p.steps),
            steps_wrong=p.steps.count(False),
        )
        for pid, p in sorted(_judged_problems(samples, verdicts, k).items())
    ]
