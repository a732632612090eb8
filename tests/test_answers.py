from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED_DATA
from wcse.data.sources import load_split
from wcse.records import Problem
from wcse.verify.answers import (
    MODES,
    STATUSES,
    check,
    extract_gsm8k,
    extract_math,
    last_boxed,
    own_solution,
    top_level_parts,
)

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark files not found in {DATA}")
# Data-side exceptions to gold-vs-gold: these MATH train solutions end in an empty \boxed{} (the
# answer letter was lost), so their gold answer is "" and no response to them can be judged.
EMPTY_GOLD = {"train/number_theory/7115.json", "train/number_theory/7117.json"}
HARD_CASES = yaml.safe_load((Path(__file__).parent / "data" / "hard_cases.yaml").read_text(encoding="utf-8"))
VERDICTS = (True, False, *STATUSES[1:])  # what a table row expects: compared (ok) or why not


def _gold_mismatches(kind: str, problems: list[Problem]) -> dict[str, list[str]]:
    """Per mode, the ids whose reference solution does not check as correct against its gold answer.

    Two worker processes, spawned rather than forked (earlier tests in the session may have started
    threads). A row's two modes go to the same worker back to back, so the second check finds the
    parsed answers in the cache: both modes cost about one.
    """
    jobs = [(problem, mode) for problem in problems for mode in MODES]
    columns = (
        [kind] * len(jobs),
        [p.solution for p, _ in jobs],
        [p.answer for p, _ in jobs],
        [m for _, m in jobs],
    )
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        verdicts = list(pool.map(check, *columns, chunksize=50 * len(MODES)))
    failed = [
        (p.id, mode) for (p, mode), verdict in zip(jobs, verdicts, strict=True) if verdict[0] is not True
    ]
    return {mode: sorted(pid for pid, m in failed if m == mode) for mode in MODES}


@needs_data
@pytest.mark.parametrize("mode", MODES)
def test_gsm8k_gold_against_gold(mode: str) -> None:
    problems = load_split("gsm8k", "train", path=str(DATA / "gsm8k/train.jsonl"))
    wrong = [p.id for p in problems if check("gsm8k", p.solution, p.answer, mode) != (True, p.answer, "ok")]
    assert wrong == []


@needs_data
def test_math500_boxed_solution_matches_answer_field_in_both_modes() -> None:
    # Every MATH-500 solution's last box agrees with its `answer` field: no exceptions needed.
    problems = load_split("math", "test", path=str(DATA / "math500/test.jsonl"))
    assert _gold_mismatches("math", problems) == {mode: [] for mode in MODES}


@needs_data
def test_math_test_golds_verify_against_themselves_in_both_modes() -> None:
    # All 5,000 MATH test rows, clock times with a.m./p.m. included ("\\text{4:30 p.m.}").
    problems = load_split("math", "test", path=str(DATA / "math/test.jsonl"))
    assert len(problems) == 5000
    assert _gold_mismatches("math", problems) == {mode: [] for mode in MODES}


@needs_data
def test_math_train_golds_verify_against_themselves_in_both_modes() -> None:
    # All 7,500 rows (~7 s on two idle cores): math-verify must read every gold answer.
    problems = load_split("math", "train", path=str(DATA / "math/train.jsonl"))
    assert _gold_mismatches("math", problems) == {mode: sorted(EMPTY_GOLD) for mode in MODES}
    empty = [p for p in problems if p.id in EMPTY_GOLD]
    for mode in MODES:
        assert [check("math", p.solution, p.answer, mode) for p in empty] == [(False, None, "error")] * 2


def test_hard_case_table_is_well_formed() -> None:
    assert len(HARD_CASES) >= 60
    for case in HARD_CASES:
        assert set(case) == {"kind", "response", "gold", "strict", "lenient", "note"}, case
        assert case["strict"] in VERDICTS and case["lenient"] in VERDICTS, case


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", HARD_CASES, ids=[f"{i}-{case['kind']}" for i, case in enumerate(HARD_CASES)])
def test_hard_cases(case: dict, mode: str) -> None:
    correct, _, status = check(case["kind"], case["response"], case["gold"], mode)
    assert status == "ok" or correct is False
    assert (correct if status == "ok" else status) == case[mode], case["note"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 1,000.50", "1000.5"),
        ("so she pays $1,234.", "1234"),
        ("#### -$5", "-5"),
        ("it is -\\$5", "-5"),
        ("The loss was $-12.00 in total", "-12"),
        ("It is 72.0 apples.", "72"),
        ("#### 72 clips. I checked 5 times.", "72"),
        ("It drops from 3-4 to 10-20", "20"),  # a range's hyphen is not a minus sign
        ("#### .5", "0.5"),
        ("#### 1/2", "1/2"),
        ("#### 4/2", "2"),
        ("#### -3/4", "-3/4"),
        ("so \\boxed{\\frac{3}{4}} of them. Check: 3 * 4 = 12", "3/4"),
        ("The answer is \\boxed{18 \\text{ dollars}}, i.e. 2 times 9.", "18"),
        ("#### 7\nbut \\boxed{8}", "7"),
        ("#### 72\n\nQuestion: and then?\nAnswer: #### 2", "72"),  # the first #### (a run-on follows)
        ("She has 72.\n\nQuestion: and then?\nAnswer: #### 2", "72"),  # the run-on is cut
        ("#### −5", "-5"),  # U+2212
        ("#### 2^3", "8"),
        ("#### 2 \\cdot 3 + 1 = 7 apples", "7"),
        ("#### 10^10^10", "10^10^10"),  # out of bounds: kept as text, graded unparsable
        ("Therefore, the answer (arabic numerals) is 1600*3.5 = $5600.", "5600"),
        ("So, he spends 34 hours studying in 4 weeks.", "34"),
        ("After 3 days, he has 12 apples left.", "12"),
        ("She has 5 times as many, which is 20.", "20"),
        ("Three trucks are needed.", "3"),
        ("Each one of them is happy.", None),  # "one" as a pronoun
        ("no digits at all", None),
        ("#### nothing", None),  # a marker without a number is no answer, not the text before it
        ("\\boxed{x}", None),
    ],
)
def test_extract_gsm8k(text: str, expected: str | None) -> None:
    assert extract_gsm8k(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("$\\boxed{1}$ first, then $\\fbox{2}$", "2"),
        ("\\boxed{\\left\\{ 1, \\sqrt{2^{3}} \\right\\}}", "\\left\\{ 1, \\sqrt{2^{3}} \\right\\}"),
        ("as in MATH: $\\boxed 9$.", "9"),
        ("The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
        ("The final answer is: 42.", "42"),
        ("The final answer is $\\$36$. I hope it is correct.", "\\$36"),  # an escaped dollar
        ("**Final Answer:** **73**", "73"),
        ("Thus the final answer is **$x+1$**.", "x+1"),
        ("I will find the final answer by adding 5.", None),  # "final answer" without "is" or ":"
        ("Final Answer: The final answer is 143. I hope it is correct.", "143"),  # Minerva, no dollars
        ("Final Answer: The final answer is $5$ and $7$. I hope it is correct.", "5 and 7"),
        ("\\boxed{3}\nFinal Answer: The final answer is $4$. I hope it is correct. \\boxed{5}", "4"),
        ("\\boxed{5}.\n\nProblem:\nWhat is 3+4?\n\nSolution:\n\\boxed{7}", "5"),  # a run-on exemplar
        ("The volume is 216.\n\n# Answer\n\n216", "216"),  # PRM800K
        ("Hence the degree of the polynomial is 15.", "15"),
        ("Counting them, the total is **6**.", "6"),
        ("So the area is $24$ square units.", "24"),
        ("The difference is 5 more than the first.", None),  # a phrase, not a closing value
        ("**Answer:** $x = 5$", "x = 5"),
        ("\\boxed{1} and then \\boxed{12", None),  # truncated: the earlier box is not the answer
        ("\\boxed{}", None),
        ("no answer here", None),
    ],
)
def test_extract_math(text: str, expected: str | None) -> None:
    assert extract_math(text) == expected


def test_own_solution_ends_at_a_run_on_exemplar() -> None:
    assert own_solution("So 5.\n\nProblem:\nNext one\n\nSolution: 7", "math") == "So 5.\n"
    assert own_solution("Problem: restated\nSo 5.", "math") == "Problem: restated\nSo 5."
    assert own_solution("#### 72\nQuestion: next\nAnswer: #### 2", "gsm8k") == "#### 72"
    assert own_solution("\nQ: first\nA: 5", "gsm8k") == "\nQ: first\nA: 5"  # nothing before it


def test_last_boxed_tells_empty_from_absent() -> None:
    assert last_boxed("x \\boxed{ }") == ""
    assert last_boxed("x") is None


@pytest.mark.parametrize(
    ("answer", "parts"),
    [
        ("1331, 1728", 2),
        ("1331 \\text{ and } 1728", 2),
        ("3, 5, 7", 3),
        ("6, 8\\text{, and }10", 3),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", 1),
        ("(0,9) \\cup (9,36)", 1),
        ("\\{1\\pm\\sqrt{5},-2\\}", 3),  # a set lists its elements; \pm is two of them
        ("\\{1\\} \\cup \\{2\\}", 1),  # not one set in braces
        ("\\frac{1 \\pm \\sqrt{5}}{2}", 2),
        ("\\text{A, C}", 2),
        ("\\text{1,000 people}", 1),
        ("11,\\! 111,\\! 111,\\! 100", 1),  # thousands separators, not parts
        ("10,080", 1),
    ],
)
def test_top_level_parts(answer: str, parts: int) -> None:
    assert top_level_parts(answer) == parts


def test_check_statuses() -> None:
    assert check("math", "I am not sure.", "5") == (False, None, "no_answer")
    assert check("gsm8k", "no idea", "5") == (False, None, "no_answer")
    assert check("math", "\\boxed{0.\\overline{3}}", "\\frac13") == (False, "0.\\overline{3}", "unparsable")
    assert check("math", "The final answer is the product of the roots.", "6") == (
        False,
        "the product of the roots",
        "unparsable",
    )
    assert check("gsm8k", "#### 10^10^10", "10") == (False, "10^10^10", "unparsable")
    assert check("gsm8k", "#### 5", "five") == (False, "5", "error")  # unreadable gold
    assert check("math", "no answer", "") == (False, None, "error")  # a bad gold wins over no answer


def test_check_runs_in_threads() -> None:
    # math-verify's signal-based timeouts raise outside the main thread; they must stay off.
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda r: check("math", r, "\\frac{1}{2}"), ["\\boxed{0.5}", "\\boxed{2}"]))
    assert verdicts == [(True, "0.5", "ok"), (False, "2", "ok")]


def test_check_rejects_unknown_kind_and_mode() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset kind 'mbpp'; known kinds: .*'gsm8k'"):
        check("mbpp", "def f(): pass", "")
    with pytest.raises(ValueError, match=r"unknown mode 'loose'"):
        check("math", "\\boxed{1}", "1", mode="loose")
