from __future__ import annotations

import random

import pytest

from tests.conftest import SHARED_DATA
from wcse.data.sources import load_split
from wcse.verify.answers import check, extract_boxed, extract_gsm8k, last_boxed, top_level_parts

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark files not found in {DATA}")
# MATH train rows whose solution ends in an empty \boxed{}: there is no gold to verify against.
EMPTY_GOLD = {"train/number_theory/7115.json", "train/number_theory/7117.json"}


@needs_data
def test_gsm8k_gold_against_gold() -> None:
    problems = load_split("gsm8k", "train", path=str(DATA / "gsm8k/train.jsonl"))
    wrong = [p.id for p in problems if check("gsm8k", p.solution, p.answer) != (True, p.answer, "ok")]
    assert wrong == []


@needs_data
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_math500_boxed_solution_matches_answer_field(mode: str) -> None:
    # Every MATH-500 solution's last box agrees with its `answer` field: no exceptions needed.
    problems = load_split("math", "test", path=str(DATA / "math500/test.jsonl"))
    wrong = [p.id for p in problems if not check("math", p.solution, p.answer, mode)[0]]
    assert wrong == []


@needs_data
def test_math_train_golds_verify_against_themselves() -> None:
    # A seeded sample (the whole split takes ~30 s): math-verify must read every gold answer.
    problems = load_split("math", "train", path=str(DATA / "math/train.jsonl"))
    sample = random.Random(0).sample([p for p in problems if p.id not in EMPTY_GOLD], 300)
    assert [p.id for p in sample if not check("math", p.solution, p.answer)[0]] == []
    empty = [p for p in problems if p.id in EMPTY_GOLD]
    assert [check("math", p.solution, p.answer) for p in empty] == [(False, None, "no_answer")] * 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 1,000.50", "1000.5"),
        ("so she pays $1,234.", "1234"),
        ("#### -$5", "-5"),
        ("The loss was $-12.00 in total", "-12"),
        ("It is 72.0 apples.", "72"),
        ("#### 72 clips. I checked 5 times.", "72"),
        ("It drops from 3-4 to 10-20", "20"),  # a range's hyphen is not a minus sign
        ("#### .5", "0.5"),
        ("no digits at all", None),
        ("#### nothing", None),  # a marker without a number is no answer, not the text before it
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
        ("\\boxed{1} and then \\boxed{12", None),  # truncated: the earlier box is not the answer
        ("\\boxed{}", None),
        ("no answer here", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_last_boxed_tells_empty_from_absent() -> None:
    assert last_boxed("x \\boxed{ }") == ""
    assert last_boxed("x") is None


@pytest.mark.parametrize(
    ("answer", "parts"),
    [
        ("1331, 1728", 2),
        ("1331 \\text{ and } 1728", 2),
        ("3, 5, 7", 3),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", 1),
        ("(0,9) \\cup (9,36)", 1),
        ("\\{1\\pm\\sqrt{5},-2\\}", 1),
        ("11,\\! 111,\\! 111,\\! 100", 1),  # thousands separators, not parts
        ("10,080", 1),
    ],
)
def test_top_level_parts(answer: str, parts: int) -> None:
    assert top_level_parts(answer) == parts


@pytest.mark.parametrize(
    ("kind", "response", "gold", "mode", "correct"),
    [
        ("gsm8k", "#### 1,000", "1000", "strict", True),
        ("gsm8k", "The total is $1,000.50.", "1000.5", "strict", True),
        ("gsm8k", "She is down -7 dollars.", "-7", "strict", True),
        ("gsm8k", "#### 7", "-7", "strict", False),
        ("gsm8k", "#### 0.1", "0.10000000000000001", "strict", False),  # exact, not float text
        ("math", "$\\boxed{0.5}$", "\\frac{1}{2}", "strict", True),
        ("math", "$\\fbox{\\frac12}$", "0.5", "strict", True),
        ("math", "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})", "strict", True),
        ("math", "\\boxed{10080}", "10,\\!080", "strict", True),
        ("math", "\\boxed{2, 1}", "1,2", "strict", True),  # an unordered list of solutions
        ("math", "\\boxed{1331, 1728}", "1331 \\text{ and } 1728", "strict", True),
        ("math", "\\boxed{1728}", "1331 and 1728", "strict", False),
        ("math", "\\boxed{1728}", "1331, 1728", "strict", False),
        ("math", "\\boxed{1, 2, 2}", "1, 2", "lenient", True),  # math-verify reads both as {1, 2}
        ("math", "\\boxed{1, 2, 2}", "1, 2", "strict", False),
        ("math", "\\boxed{7}", "8", "lenient", False),
        ("functional_math", "The final answer is $x^2+2x+1$.", "(x+1)^2", "strict", True),
    ],
)
def test_check(kind: str, response: str, gold: str, mode: str, correct: bool) -> None:
    result, _, status = check(kind, response, gold, mode)
    assert (result, status) == (correct, "ok")


def test_check_statuses() -> None:
    assert check("math", "I am not sure.", "5") == (False, None, "no_answer")
    assert check("gsm8k", "no idea", "5") == (False, None, "no_answer")
    assert check("gsm8k", "#### 5", "five") == (False, "5", "error")  # unreadable gold


def test_check_rejects_unknown_kind_and_mode() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset kind 'mbpp'; known kinds: .*'gsm8k'"):
        check("mbpp", "def f(): pass", "")
    with pytest.raises(ValueError, match=r"unknown mode 'loose'"):
        check("math", "\\boxed{1}", "1", mode="loose")
