"""Code verification: extraction from realistic responses (and runaway ones, in linear time), test
programs, the CLI on code datasets, and gold-vs-gold runs."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import SHARED_DATA
from wcse.data.sources import load_split
from wcse.records import Problem
from wcse.verify.code import (
    FORMATS,
    MAX_RECORDED_CHARS,
    MAX_UNFENCED_CHARS,
    check,
    extract_code,
    problem_format,
    programs_for,
)
from wcse.verify.sandbox import Limits

MBPP_FILE = SHARED_DATA / "mbpp" / "mbpp.jsonl"
HUMANEVAL_FILE = SHARED_DATA / "humaneval" / "HumanEval.jsonl"
needs_data = pytest.mark.skipif(
    not (MBPP_FILE.is_file() and HUMANEVAL_FILE.is_file()),
    reason=f"MBPP / HumanEval files not found in {SHARED_DATA}",
)
# Data-side exceptions to gold-vs-gold, by task id with the reason. None: every MBPP reference
# solution (all 974 tasks, with test_setup_code) and every HumanEval canonical solution passes.
GOLD_EXCEPTIONS: dict[str, str] = {}
QUICK = Limits(timeout_s=5)
# Some MBPP solutions hold invalid escape sequences ("\."), which the parser warns about.
quiet_parser = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::SyntaxWarning")

EXTRACTION_CASES = [
    # MBPP few-shot, base model: the answer, then an invented next exemplar.
    (
        "[BEGIN]\ndef add(a, b):\n  return a + b\n[DONE]\n\nYou are an expert Python programmer, and here is "
        "your task: Write a function to subtract.\n[BEGIN]\ndef sub(a, b):\n  return a - b\n[DONE]",
        "def add(a, b):\n  return a + b",
    ),
    (
        "def add(a, b):\r\n  return a + b\r\n[DONE]\r\n",
        "def add(a, b):\r\n  return a + b",
    ),  # [BEGIN] in the prompt
    (
        "[BEGIN]\nimport math\ndef root(x):\n    return math.sqrt(x)",
        "import math\ndef root(x):\n    return math.sqrt(x)",
    ),
    ("[BEGIN]\n```python\ndef one():\n    return 1\n```\n[DONE]", "def one():\n    return 1"),
    ("[BEGIN]\n[DONE]", None),
    # Chat style: prose around fences; the defining block wins over the usage example after it.
    (
        "Here is the solution:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\nExample:\n\n"
        "```python\nprint(add(1, 2))  # 3\n```\nHope this helps!",
        "def add(a, b):\n    return a + b",
    ),
    (
        "First try:\n```python\ndef f(x):\n    return x\n```\nWait, that is wrong. Fixed:\n"
        "```py\ndef f(x):\n    return 2 * x\n```",
        "def f(x):\n    return 2 * x",
    ),
    ("```\nx = 1\n```", "x = 1"),
    ("```python\nx = 1\ny = 2```\nDone.", "x = 1\ny = 2"),  # closing fence on the last code line
    ("Install it:\n```bash\npip install numpy\n```\n```Python\nimport numpy\n```", "import numpy"),
    ("```python\ndef cut(x):\n    return x +", "def cut(x):\n    return x +"),  # cut off by the token limit
    ("```text\nhello\n```", None),
    # HumanEval completions: the indented rest of the prompt's function body.
    ("    return sorted(set(l))\n", "    return sorted(set(l))"),
    ("\n    return a + b\n\nThis function adds two numbers.", "    return a + b"),
    (
        "    return x\n\n\ndef check(candidate):\n    assert candidate(1) == 1\n",
        "    return x\n\n\ndef check(candidate):\n    assert candidate(1) == 1",
    ),
    # Unfenced code, alone or with prose around it.
    ("def double(x):\n    return x * 2\n", "def double(x):\n    return x * 2"),
    ("Here is my answer:\ndef f(x):\n    return x\nHope this helps!", "def f(x):\n    return x"),
    ("import re\nprint(re.sub('a', 'b', 'aa'))", "import re\nprint(re.sub('a', 'b', 'aa'))"),
    # No code.
    ("I am not sure how to solve this problem.", None),
    ("Sure", None),
    ("42", None),
    ("", None),
]


@pytest.mark.parametrize(("response", "expected"), EXTRACTION_CASES)
def test_extract_code(response: str, expected: str | None) -> None:
    assert extract_code(response) == expected


MB = 1 << 20
DEF = "def f(x):\n    return x + 1\n"
# Runaway responses of a megabyte: (response, the extracted code). Before the parse cuts jumped
# to the failing line, the first two took minutes (a parse per line).
RUNAWAYS = {
    "prose": ("I will explain it step by step.\n" * (MB // 32), None),
    "code-then-prose": (DEF + "Then we keep thinking about it!\n" * (MB // 32), DEF.strip()),
    "code": (
        DEF * (MB // len(DEF)),
        (DEF * (MAX_UNFENCED_CHARS // len(DEF))).strip(),
    ),  # the whole defs that fit
    "unclosed-bracket": ("x = (1 +\n" + "2 +\n" * (MB // 4), None),
    "backslash-continuations": ("x = 1 + \\\n" + "2 + \\\n" * (MB // 6), None),
    "open-fence": ("Here:\n```python\n" + DEF * (MB // len(DEF)), (DEF * (MB // len(DEF))).strip()),
    "fences": ("```python\nx = 1\n" * (MB // 16), "x = 1"),
    "begin-no-done": ("[BEGIN]\n" + DEF * (MB // len(DEF)), (DEF * (MB // len(DEF))).strip()),
}


@pytest.mark.parametrize("shape", list(RUNAWAYS))
def test_a_megabyte_response_extracts_without_a_parse_per_line(shape: str) -> None:
    response, expected = RUNAWAYS[shape]
    started = time.process_time()  # CPU time: the machine may be shared
    assert extract_code(response) == expected
    # A guard against the quadratic parse (minutes), not a speed target: the slowest shape takes
    # 0.2 s of CPU here, and more on a loaded machine (once 0.5 s), so the bound is far from both.
    assert time.process_time() - started < 10


def _mbpp(code: str = "", tests: tuple[str, ...] = ("assert add(1, 2) == 3",), setup: str = "") -> Problem:
    return Problem(
        id="mbpp-t", question="", answer="", solution=code, meta={"tests": list(tests), "setup": setup}
    )


HUMANEVAL_PROMPT = '''from typing import List


def is_even(n: int) -> bool:
    return n % 2 == 0


def evens(xs: List[int]) -> List[int]:
    """Keep the even numbers.
    >>> evens([1, 2, 4])
    [2, 4]
    """
'''
HUMANEVAL = Problem(
    id="HumanEval/t",
    question=HUMANEVAL_PROMPT,
    answer="",
    meta={
        "test": "def check(candidate):\n    assert candidate([1, 2, 4]) == [2, 4]\n",
        "entry_point": "evens",
    },
)


def test_mbpp_program_runs_the_setup_after_the_code_and_then_every_test() -> None:
    problem = _mbpp(tests=("assert depth(root) == 2", "assert depth(None) == 0"), setup="root = Node(Node())")
    code = (
        "class Node:\n    def __init__(self, child=None):\n        self.child = child\n"
        "def depth(n):\n    return 0 if n is None else 1 + depth(n.child)"
    )
    programs = programs_for("mbpp", problem, code)
    assert programs.candidate.index("class Node") < programs.candidate.index("root = Node")
    assert "assert" not in programs.candidate and programs.judge.startswith("assert depth(root) == 2\n")
    assert check("mbpp", code, problem, QUICK) == (True, code, "ok")  # root crosses as a handle


@pytest.mark.parametrize(
    "response",
    [
        "    return [x for x in xs if is_even(x)]\n",  # a completion of the prompt
        "```python\ndef evens(xs: List[int]) -> List[int]:\n    return [x for x in xs if is_even(x)]\n```",
    ],
    ids=["completion", "whole-function-using-the-prompt's-import-and-helper"],
)
def test_humaneval_accepts_a_completion_and_a_whole_function(response: str) -> None:
    programs = programs_for("humaneval", HUMANEVAL, extract_code(response) or "")
    assert programs.candidate.startswith(HUMANEVAL_PROMPT.rstrip()) and "check" not in programs.candidate
    assert programs.judge.startswith(HUMANEVAL_PROMPT.rstrip())
    assert programs.judge.endswith("evens = __candidate__('evens')\ncheck(evens)\n")
    assert check("humaneval", response, HUMANEVAL, QUICK)[::2] == (True, "ok")


@pytest.mark.parametrize(
    ("response", "verdict"),
    [
        ("def add(a, b):\n    return a + b", (True, "ok")),
        ("def add(a, b):\n    return a - b", (False, "ok")),  # wrong: a verdict, not an error
        ("```python\ndef add(a, b):\n    return a +\n```", (False, "ok")),  # fenced, so code, if broken
        ("import sys\nsys.exit(0)\ndef add(a, b):\n    return 0", (False, "ok")),  # exits before the tests
        ("def add(a, b):\n    while True:\n        pass", (False, "timeout")),
        ("def add(a, b):\n    return len(bytearray(10 * 2**30))", (False, "memory")),
        ("def add(a, b):\n    while True:\n        print(a)", (False, "output_limit")),
        ("import os\nos.system('true')\ndef add(a, b):\n    return a + b", (False, "blocked")),
        ("Let me think about adding numbers.", (False, "no_answer")),
    ],
    ids=["right", "wrong", "syntax-error", "early-exit", "timeout", "memory", "output", "blocked", "no-code"],
)
def test_check_statuses(response: str, verdict: tuple[bool, str]) -> None:
    correct, extracted, status = check("mbpp", response, _mbpp(), Limits(timeout_s=2, output_bytes=1024))
    assert (correct, status) == verdict
    assert extracted == (None if status == "no_answer" else extract_code(response))


def test_check_errors_without_tests_and_rejects_unknown_formats() -> None:
    assert check("mbpp", "x = 1", _mbpp(tests=()), QUICK) == (False, "x = 1", "error")
    with pytest.raises(ValueError, match="unknown code format"):
        check("apps", "x = 1", _mbpp())
    assert FORMATS == ("mbpp", "humaneval")


def test_each_problem_is_judged_by_its_own_tests_whatever_the_code_format() -> None:
    """dataset=mbpp trains on MBPP and tests on HumanEval, and the evaluator grades every split in
    the dataset's format, "mbpp": a HumanEval problem is still run against its check() (it used to
    be all "error", for want of MBPP asserts, so HumanEval pass@1 was 0 whatever the model)."""
    whole = "[BEGIN]\ndef evens(xs):\n    return [x for x in xs if x % 2 == 0]\n"
    assert problem_format("mbpp", HUMANEVAL) == "humaneval" and problem_format("humaneval", _mbpp()) == "mbpp"
    assert check("mbpp", whole, HUMANEVAL, QUICK)[::2] == (True, "ok")
    assert check("mbpp", whole.replace("== 0", "== 1"), HUMANEVAL, QUICK)[::2] == (False, "ok")
    assert check("humaneval", "def add(a, b):\n    return a + b", _mbpp(), QUICK)[::2] == (True, "ok")
    bare = Problem(id="x", question="", answer="", meta={})
    assert problem_format("humaneval", bare) == "humaneval" and check("mbpp", "x = 1", bare, QUICK)[2] == "error"
    with pytest.raises(ValueError, match="unknown code format"):
        problem_format("apps", HUMANEVAL)


def test_long_code_is_recorded_cut_but_run_whole() -> None:
    padding = "\n".join(f"x{i} = {i}" for i in range(2000))
    code = padding + "\ndef add(a, b):\n    return a + b"
    correct, extracted, status = check("mbpp", code, _mbpp(), QUICK)
    assert (correct, status) == (True, "ok")  # the definition at the end ran
    assert extracted == code[:MAX_RECORDED_CHARS] and len(code) > MAX_RECORDED_CHARS


# ------------------------------------------------------------------------------ gold vs gold


def _gold(full: bool) -> list[tuple[str, str, Problem]]:
    """(format, response, problem): MBPP reference code; HumanEval canonical body as a completion,
    and (a seeded sample) the prompt plus that body as a whole-function answer."""
    mbpp = load_split("mbpp", "train", path=str(MBPP_FILE))
    humaneval = load_split("humaneval", "test", path=str(HUMANEVAL_FILE))
    if not full:
        rng = random.Random(0)
        mbpp, humaneval = rng.sample(mbpp, 40), rng.sample(humaneval, 20)
    jobs = [("mbpp", p.solution, p) for p in mbpp] + [("humaneval", p.solution, p) for p in humaneval]
    return jobs + [("humaneval", p.question + p.solution, p) for p in humaneval[:20]]


def _gold_failures(jobs: list[tuple[str, str, Problem]]) -> dict[str, str]:
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda job: check(*job), jobs))
    print(f"gold vs gold: {len(jobs)} programs in {time.monotonic() - started:.1f} s (2 threads)")
    failures = {
        p.id: status for (_, _, p), (correct, _, status) in zip(jobs, verdicts, strict=True) if not correct
    }
    return {pid: status for pid, status in failures.items() if pid not in GOLD_EXCEPTIONS}


@needs_data
@quiet_parser
def test_gold_solutions_pass_a_seeded_sample() -> None:
    assert _gold_failures(_gold(full=False)) == {}


@needs_data
@quiet_parser
@pytest.mark.slow
def test_gold_solutions_pass_all() -> None:
    jobs = _gold(full=True)
    assert len({p.id for _, _, p in jobs}) == 974 + 164
    assert _gold_failures(jobs) == {}
