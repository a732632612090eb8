"""Model-written code that passes the tests without solving them, run for real in the sandbox.

Each hack is first shown to work where the tests share the code's process (code and tests as one
program under ``run_python``, which is how they were run before the tests were judged apart), so
that no test here passes merely because its hack is broken; then ``code.check`` must fail it.
"""

from __future__ import annotations

import textwrap

import pytest

from wcse.records import Problem
from wcse.verify.code import check, programs_for
from wcse.verify.sandbox import Limits, run_python

LIMITS = Limits(timeout_s=10)


def _mbpp(*tests: str, solution: str = "") -> Problem:
    return Problem(
        id="mbpp-hack", question="", answer="", solution=solution, meta={"tests": list(tests), "setup": ""}
    )


ADD = _mbpp("assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(5, 5) == 10")
PAIRS = _mbpp("assert pairs([1, 2]) == [(1, 2)]", "assert pairs([3, 4, 5]) == [(3, 4), (4, 5)]")
CLOSE = _mbpp("import math\nassert math.isclose(area(2), 12.566, rel_tol=0.001)")
AS_SET = _mbpp("assert set(common([1, 2], [2, 3])) == set([2])", "assert set(common([4], [5])) == set([])")
SORTED = _mbpp("assert sorted(common([1, 2], [2, 1])) == [1, 2]")
ALL_MAP = _mbpp("assert all(map(lambda x: double(x) == 2 * x, [1, 2, 3]))")

# Frames: the code climbs to whatever called it, which is the tests when they share its process.
FORGE_PASS = """
import os, sys
def forge():  # find the harness's report function in a frame above, report "done", leave
    frame = sys._getframe()
    while frame is not None:
        if callable(frame.f_locals.get("report")):
            frame.f_locals["report"]("done")
            os._exit(0)
        frame = frame.f_back
"""
PEEK = """
import dis, sys
def add(a, b):  # the constant the caller loads after this call: in `assert add(1, 2) == 3`, 3
    caller = sys._getframe(1)
    for instruction in dis.get_instructions(caller.f_code):
        if instruction.offset > caller.f_lasti and instruction.opname == "LOAD_CONST":
            return instruction.argval
"""
ALWAYS_EQUAL = """
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
"""

HACKS = {
    "always-equal": (ADD, ALWAYS_EQUAL + "def add(a, b):\n    return Anything()"),
    "mock.ANY": (ADD, "from unittest import mock\ndef add(a, b):\n    return mock.ANY"),
    "int-subclass": (ADD, "class Int(int):\n    __eq__ = lambda self, other: True\n    __hash__ = int.__hash__\n"
                          "def add(a, b):\n    return Int(0)"),
    "list-of-always-equal": (PAIRS, ALWAYS_EQUAL + "def pairs(xs):\n    return [Anything()] * (len(xs) - 1)"),
    "patched-math.isclose": (CLOSE, "import math\nmath.isclose = lambda *a, **k: True\ndef area(r):\n    return 0"),
    "shadowed-builtin": (AS_SET, "def set(*args):\n    return 0\ndef common(a, b):\n    return []"),
    "patched-builtins": (SORTED, "import builtins\nbuiltins.sorted = lambda *a, **k: [1, 2]\ndef common(a, b):\n    return []"),
    "StopIteration": (ALL_MAP, "def double(x):\n    raise StopIteration"),
    "forged-pass-at-import": (ADD, FORGE_PASS + "forge()\ndef add(a, b):\n    return 0"),
    "forged-pass-in-a-call": (ADD, FORGE_PASS + "def add(a, b):\n    forge()"),
    "peek-at-the-expected-value": (ADD, PEEK),
}  # fmt: skip


@pytest.mark.parametrize("hack", list(HACKS))
def test_a_hack_that_fools_tests_in_its_process_fails_the_judged_check(hack: str) -> None:
    problem, code = HACKS[hack]
    shared = run_python(code + "\n\n" + programs_for("mbpp", problem, code).judge, LIMITS)
    assert shared.status == "passed", f"the hack does not even work in-process: {shared.stderr}"
    correct, _, status = check("mbpp", code, problem, LIMITS)
    assert (correct, status) == (False, "ok")


PROMPT = '''def encode(s: str) -> str:
    """Shift every letter by one."""
    return "".join(chr(ord(c) + 1) for c in s)


def decode(s: str) -> str:
    """Undo ``encode``.
    >>> decode(encode("abc"))
    'abc'
    """
'''
CODEC = Problem(
    id="HumanEval/hack",
    question=PROMPT,
    answer="",
    meta={
        "test": "def check(candidate):\n    for s in ('abc', 'xyz'):\n        assert candidate(encode(s)) == s\n",
        "entry_point": "decode",
    },
)


def test_humaneval_tests_use_the_prompts_helpers_not_the_codes() -> None:
    """HumanEval/38 and /50 check ``decode`` on ``encode``'s output: code that redefines both as the
    identity passes when the tests see its ``encode``."""
    hack = textwrap.dedent(
        """
        def encode(s):
            return s


        def decode(s):
            return s
        """
    )
    right = "    return ''.join(chr(ord(c) - 1) for c in s)\n"
    programs = programs_for("humaneval", CODEC, hack)
    assert (
        run_python(programs.candidate + "\n" + CODEC.meta["test"] + "check(decode)\n", LIMITS).status
        == "passed"
    )
    assert check("humaneval", hack, CODEC, LIMITS)[::2] == (False, "ok")
    assert check("humaneval", right, CODEC, LIMITS)[::2] == (True, "ok")


@pytest.mark.parametrize(
    "code",
    [
        "import sys\ndef add(a, b):\n    sys.exit(0)",
        "import os\ndef add(a, b):\n    os._exit(0)",
        "def add(a, b):\n    raise SystemExit(0)",
    ],
    ids=["sys.exit", "os._exit", "SystemExit"],
)
def test_exiting_during_a_test_fails_it(code: str) -> None:
    assert check("mbpp", code, ADD, LIMITS)[::2] == (False, "ok")


def test_the_subclass_hack_still_counts_its_content() -> None:
    """A subclass crosses as its content: an int subclass holding the right sums passes."""
    code = "class Int(int):\n    __eq__ = lambda self, other: True\n    __hash__ = int.__hash__\ndef add(a, b):\n    return Int(a + b)"
    assert check("mbpp", code, ADD, LIMITS)[::2] == (True, "ok")
