from __future__ import annotations

import itertools
import random

import pytest

from wcse.metrics import (
    ProblemMetrics,
    computation_signature,
    coverage_at_k,
    data_metrics,
    diversity_at_k,
    normalize_text,
    per_problem,
)
from wcse.records import Sample, Verdict
from wcse.stats import wilson_interval


def _sample(pid: str, i: int, text: str) -> Sample:
    return Sample(
        key=f"{pid}/{i}", model="m", dataset="d", problem_id=pid, index=i, seed=0, params={}, prompt="q",
        text=text, prompt_tokens=1, generated_tokens=1, finish_reason="stop", backend="toy", seconds=0.0,
    )


def _verdict(pid: str, i: int, correct: bool, steps: bool | None = None) -> Verdict:
    return Verdict(
        key=f"{pid}/{i}", problem_id=pid, index=i, extracted="1", correct=correct, steps_correct=steps,
        status="ok",
    )


def _random_problem(rng: random.Random) -> tuple[list[str], list[bool]]:
    n = rng.randint(1, 8)
    texts = [rng.choice(["A", "a ", " B", "b\n", "C", "D"]) for _ in range(n)]
    return texts, [rng.random() < 0.5 for _ in range(n)]


def test_coverage_matches_enumeration() -> None:
    rng = random.Random(0)
    for _ in range(60):
        _, correct = _random_problem(rng)
        n, c = len(correct), sum(correct)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(correct, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert coverage_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_diversity_matches_enumeration() -> None:
    rng = random.Random(1)
    for _ in range(60):
        texts, correct = _random_problem(rng)
        n = len(texts)
        correct_texts = [t for t, ok in zip(texts, correct, strict=True) if ok]
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            unique = [len({normalize_text(texts[i]) for i in s if correct[i]}) for s in subsets]
            brute = sum(unique) / len(subsets)
            assert diversity_at_k(correct_texts, n, k) == pytest.approx(brute, abs=1e-12)


def test_diversity_uses_the_normalizer() -> None:
    texts = ["x = 1", "X  =  1 ", "x=1"]
    assert diversity_at_k(texts, 3, 3) == pytest.approx(2.0)
    assert diversity_at_k(texts, 3, 3, normalize=lambda t: t.replace(" ", "").lower()) == pytest.approx(1.0)
    assert diversity_at_k([], 4, 2) == 0.0


def test_estimator_argument_errors() -> None:
    with pytest.raises(ValueError, match="k"):
        coverage_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="c"):
        coverage_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="k"):
        diversity_at_k([], 3, 0)
    with pytest.raises(ValueError, match="correct texts"):
        diversity_at_k(["a", "b"], 1, 1)


def _hand_built() -> tuple[list[Sample], list[Verdict]]:
    # p1 (level 1): 4 samples, 2 correct with the same solution up to spacing; one has a wrong step.
    # p2 (level 2): 4 samples, 1 correct, steps unknown.  p3 (level 2): 4 samples, none correct.
    rows = [
        ("p1", 0, "x = 2", True, True),
        ("p1", 1, "X =  2", True, False),
        ("p1", 2, "x = 3", False, None),
        ("p1", 3, "x = 4", False, False),  # wrong answer: does not count towards the FPR
        ("p2", 0, "y", True, None),
        ("p2", 1, "z", False, None),
        ("p2", 2, "w", False, None),
        ("p2", 3, "v", False, None),
        ("p3", 0, "a", False, None),
        ("p3", 1, "b", False, None),
        ("p3", 2, "c", False, None),
        ("p3", 3, "d", False, None),
    ]
    samples = [_sample(pid, i, text) for pid, i, text, _, _ in rows]
    verdicts = [_verdict(pid, i, ok, steps) for pid, i, _, ok, steps in rows]
    return samples, verdicts


def test_data_metrics_on_a_hand_built_set() -> None:
    samples, verdicts = _hand_built()
    extra = _sample("p9", 0, "never judged")  # samples without verdicts are not measured
    out = data_metrics([*samples, extra], verdicts, k=2, groups={"level": {"p1": 1, "p2": 2, "p3": 2, "p9": None}})
    # coverage@2: p1 1 - C(2,2)/C(4,2) = 5/6, p2 1 - C(3,2)/C(4,2) = 1/2, p3 0.
    # diversity@2: p1 has one unique correct solution (m=2) -> 5/6; p2 one (m=1) -> 1/2.
    fpr_low, fpr_high = wilson_interval(1, 2)
    assert out == {
        "k": 2,
        "n_problems": 3,
        "n_samples": 12,
        "n_correct": 3,
        "accuracy": pytest.approx(3 / 12),
        "coverage": pytest.approx((5 / 6 + 1 / 2) / 3),
        "solved": pytest.approx(2 / 3),  # p1 and p2 have a correct sample, p3 none
        "coverage_curve": {
            "1": pytest.approx((2 / 4 + 1 / 4) / 3),
            "2": pytest.approx((5 / 6 + 1 / 2) / 3),
            "4": pytest.approx(2 / 3),
        },
        "diversity": pytest.approx((5 / 6 + 1 / 2) / 3),
        "diversity_by_rule": {"exact": pytest.approx((5 / 6 + 1 / 2) / 3), "computation": pytest.approx((5 / 6 + 1 / 2) / 3)},
        "fpr": {"value": 0.5, "low": pytest.approx(fpr_low), "high": pytest.approx(fpr_high), "n": 2},
        "per_level": {
            "1": {
                "k": 2, "n_problems": 1, "n_samples": 4, "n_correct": 2, "accuracy": 0.5,
                "coverage": pytest.approx(5 / 6), "solved": 1.0, "diversity": pytest.approx(5 / 6),
                "diversity_by_rule": {"exact": pytest.approx(5 / 6), "computation": pytest.approx(5 / 6)},
                "fpr": {"value": 0.5, "low": pytest.approx(fpr_low), "high": pytest.approx(fpr_high), "n": 2},
            },
            "2": {
                "k": 2, "n_problems": 2, "n_samples": 8, "n_correct": 1, "accuracy": 1 / 8,
                "coverage": pytest.approx(1 / 4), "solved": 0.5, "diversity": pytest.approx(1 / 4),
                "diversity_by_rule": {"exact": pytest.approx(1 / 4), "computation": pytest.approx(1 / 4)},
                "fpr": {"value": None, "low": 0.0, "high": 1.0, "n": 0},
            },
        },
    }
    assert list(out["per_level"]) == ["1", "2"]


def test_data_metrics_curve() -> None:
    samples, verdicts = _hand_built()
    extra = [_sample("p1", i, "x = 2") for i in range(4, 6)]
    out = data_metrics([*samples, *extra], verdicts + [_verdict("p1", i, True) for i in range(4, 6)], k=1)
    assert list(out["coverage_curve"]) == ["1", "2", "4"]  # M_min = 4 (p2, p3) although p1 has 6
    assert "per_level" not in out
    assert list(data_metrics(samples, verdicts, k=1, curve_ks=[3])["coverage_curve"]) == ["3"]
    three = [v for v in verdicts if v.index < 3]
    assert list(data_metrics(samples, three, k=1)["coverage_curve"]) == ["1", "2", "3"]  # ends at M_min


def test_data_metrics_errors() -> None:
    samples, verdicts = _hand_built()
    with pytest.raises(ValueError, match="p2/3"):
        data_metrics([s for s in samples if s.key != "p2/3"], verdicts, k=1)
    with pytest.raises(ValueError, match="'p3'"):
        data_metrics(samples, [v for v in verdicts if v.key != "p3/0"], k=4)
    with pytest.raises(ValueError, match="p1/0"):
        data_metrics(samples, [*verdicts, verdicts[0]], k=1)
    with pytest.raises(ValueError, match="'p3'"):
        data_metrics(samples, verdicts, k=1, groups={"level": {"p1": 1, "p2": 2}})
    with pytest.raises(ValueError, match="known rules"):
        data_metrics(samples, verdicts, k=1, rules=["embedding"])
    with pytest.raises(ValueError, match="curve"):
        data_metrics(samples, verdicts, k=1, curve_ks=[5])
    with pytest.raises(ValueError, match="no verdicts"):
        data_metrics(samples, [], k=1)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("3 + 4 = 7, then 7 * 2 = 14. #### 14", "First add 3 and 4 to get 7; 7 times 2 gives 14. #### 14", True),
        ("Total: 1,000 + 500 = 1500", "Total: 1000.0 + 500 = 1,500", True),  # number formats agree
        ("3 + 4 = 7, 7 * 2 = 14", "2 * 3 = 6, 2 * 4 = 8, 6 + 8 = 14", False),  # another route
        ("4 + 3 = 7, 7 * 2 = 14", "3 + 4 = 7, 7 * 2 = 14", False),  # another order of first appearance
        ("x = -2 or x = 2", "x = 2 or x = -2", False),
    ],
)
def test_computation_signature(a: str, b: str, same: bool) -> None:
    assert (computation_signature(a) == computation_signature(b)) is same
    assert (normalize_text(a) == normalize_text(b)) is (a == b)  # exact match is stricter here


def test_diversity_with_the_semantic_rule_matches_monte_carlo() -> None:
    rng = random.Random(2)
    forms = ["3 + 4 = 7; 7 * 2 = 14", "Adding 3 and 4 gives 7, and 7 times 2 is 14", "2 * 3 = 6; 2 * 4 = 8; 6 + 8 = 14"]
    n, k = 12, 5
    texts = [rng.choice(forms) for _ in range(n)]
    correct = [rng.random() < 0.7 for _ in range(n)]
    exact = diversity_at_k([t for t, ok in zip(texts, correct, strict=True) if ok], n, k, computation_signature)
    draws = [rng.sample(range(n), k) for _ in range(40000)]
    mc = sum(len({computation_signature(texts[i]) for i in d if correct[i]}) for d in draws) / len(draws)
    assert exact == pytest.approx(mc, abs=0.02)
    assert exact < diversity_at_k([t for t, ok in zip(texts, correct, strict=True) if ok], n, k)  # paraphrases merge


def test_groups_and_the_per_problem_table() -> None:
    samples, verdicts = _hand_built()
    out = data_metrics(samples, verdicts, k=2, groups={"subject": {"p1": "algebra", "p2": "geometry", "p3": "algebra"}})
    assert list(out["per_subject"]) == ["algebra", "geometry"]
    assert out["per_subject"]["algebra"]["n_problems"] == 2
    rows = per_problem(samples, verdicts, k=2, rules=["exact"])
    assert rows[0] == ProblemMetrics("p1", 4, 2, pytest.approx(5 / 6), {"exact": pytest.approx(5 / 6)}, 2, 1)
    assert [(r.problem_id, r.n_correct, r.steps_checked) for r in rows] == [("p1", 2, 2), ("p2", 1, 0), ("p3", 0, 0)]
    mean = sum(r.coverage for r in rows) / len(rows)
    assert mean == pytest.approx(data_metrics(samples, verdicts, k=2)["coverage"])  # the table adds up
