"""Scoring of evaluations: sampled pass@1, maj@k by majority vote, per level and subject."""

from __future__ import annotations

import pytest

from wcse.evaluate import maj_at_k, majority_correct, score
from wcse.records import Problem, Verdict
from wcse.stats import wilson_interval


def _v(pid: str, i: int, extracted: str | None, correct: bool) -> Verdict:
    return Verdict(f"{pid}/{i}", pid, i, extracted, correct, None, "ok" if extracted else "no_answer")


@pytest.mark.parametrize(
    ("answers", "gold", "expected"),
    [
        (["7", "7", "8"], "7", True),
        (["8", "7", "8"], "7", False),
        (["7", "8"], "7", True),  # a tie goes to the answer given first
        (["8", "7"], "7", False),
        ([None, None, "7"], "7", True),  # no answer casts no vote
        ([None, None], "7", False),
    ],
)
def test_majority_vote(answers: list[str | None], gold: str, expected: bool) -> None:
    verdicts = [_v("p", i, a, a == gold) for i, a in enumerate(answers)]
    assert majority_correct(verdicts) is expected


def test_maj_at_k_averages_disjoint_groups() -> None:
    # p: 4 samples 7 8 8 7 (gold 7): maj@1 = 2/4, maj@2 groups (7,8)->7 ok, (8,7)->8 wrong = 1/2,
    # maj@4 tie 7 vs 8 -> first (7) ok = 1. q: 4 samples all wrong.
    p = [_v("p", i, a, a == "7") for i, a in enumerate(["7", "8", "8", "7"])]
    q = [_v("q", i, "1", False) for i in range(4)]
    by_problem = {"p": p, "q": q}
    assert [maj_at_k(by_problem, k) for k in (1, 2, 4)] == [pytest.approx(0.25), pytest.approx(0.25), 0.5]
    with pytest.raises(ValueError, match="maj@8: problem 'p' has only 4 samples"):
        maj_at_k(by_problem, 8)


def test_score_with_several_samples_per_problem() -> None:
    problems = [Problem("p", "", "7", level=1, subject="algebra"), Problem("q", "", "1", level=2, subject="geometry")]
    verdicts = [_v("p", i, a, a == "7") for i, a in enumerate(["7", "8", "7", "7"])]
    verdicts += [_v("q", i, a, a == "1") for i, a in enumerate(["2", "2", "1", "2"])]
    result = score(problems, list(reversed(verdicts)), maj_ks=[1, 4])  # any order: votes follow the index
    assert result["n"] == 8 and result["n_problems"] == 2
    assert result["pass@1"] == pytest.approx(4 / 8) == result["maj"]["1"]
    assert result["maj"]["4"] == pytest.approx(0.5)  # p's majority 7 right, q's majority 2 wrong
    assert {k: (r["value"], r["n"]) for k, r in result["per_level"].items()} == {"1": (0.75, 4), "2": (0.25, 4)}
    assert {k: r["value"] for k, r in result["per_subject"].items()} == {"algebra": 0.75, "geometry": 0.25}
    assert result["per_level"]["1"]["low"] == pytest.approx(wilson_interval(3, 4)[0])
