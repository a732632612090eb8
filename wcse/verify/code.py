"""Code answers (MBPP, HumanEval): extract the program from a response, run it against the tests.

A response is correct when its code passes every test of its problem, run by
:func:`wcse.verify.sandbox.run_python` (generated code is untrusted). The verdict mirrors
:func:`wcse.verify.answers.check`: ``(correct, extracted code, status)``.
"""

from __future__ import annotations

import ast
import re

from wcse.records import Problem
from wcse.verify.sandbox import DEFAULT_LIMITS, Limits, run_python

FORMATS = ("mbpp", "humaneval")
# Sandbox statuses that are a verdict on the code rather than on its conduct.
VERDICT_STATUSES = ("passed", "failed")
MAX_RECORDED_CHARS = 8192  # the extracted code kept in a Verdict (the whole of it is what runs)

# An opening fence (``` or ```python / py / python3, any case) and its block, to the closing
# fence (on its own line or ending the last line of code) or, in a response cut off by the token
# limit, to the end.
_FENCE = re.compile(
    r"^[ \t]*```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[^\n]*\n(?P<body>.*?)(?:^[ \t]*```|```[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_TAGS = ("", "python", "py", "python3")
_DEFINES = re.compile(r"^[ \t]*(?:async[ \t]+def|def|class)[ \t]", re.MULTILINE)
_CODE_START = re.compile(
    r"^(?:(?:async[ \t]+)?def[ \t]|class[ \t]|import[ \t]|from[ \t]+\S+[ \t]+import[ \t]|@)"
)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")


def extract_code(response: str) -> str | None:
    """The code of a model response, None when it has none. In order of precedence:

    1. The MBPP prompt's answer format, ``[BEGIN] code [DONE]``: the text before the first
       ``[DONE]`` (a base model goes on to invent the next exemplar) and after the last
       ``[BEGIN]`` (the prompt ends before it, so the model may or may not write it). Taken as
       code as it stands, unless it holds fenced blocks, which then decide as in 2.
    2. Fenced blocks (untagged or tagged Python): the last one that defines a function or a class
       (a model's final version, not the example-usage block that often follows it), else the
       last one. A block left open by the token limit runs to the end.
    3. Unfenced text (a completion continuing a HumanEval prompt, or bare code): the longest run
       of lines from the start, or else from the first line that opens a definition or an
       import, that parses as Python, alone or as the rest of a function body, and does more
       than state expressions (so a lone word such as "Sure" is not code). Trailing prose is cut off.

    Leading blank lines and trailing whitespace are removed; indentation is kept, since a
    HumanEval completion is indented as the body of the prompt's function.
    """
    region = _between_markers(response)
    text = response if region is None else region
    blocks = [m.group("body") for m in _FENCE.finditer(text) if m.group("lang").lower() in _PYTHON_TAGS]
    if blocks:
        defining = [block for block in blocks if _DEFINES.search(block)]
        code: str | None = (defining or blocks)[-1]
    elif region is not None:
        code = region
    else:
        code = _leading_code(text)
    code = _LEADING_BLANK_LINES.sub("", code or "").rstrip()
    return code or None


def _between_markers(response: str) -> str | None:
    """The answer in the MBPP prompt's ``[BEGIN] ... [DONE]`` format, None if not in it."""
    if "[BEGIN]" not in response and "[DONE]" not in response:
        return None
    return response.split("[DONE]", 1)[0].rsplit("[BEGIN]", 1)[-1]


def _is_code(text: str) -> bool:
    """Whether ``text`` parses as a module, or as the body of a function, that does something."""
    for source, in_function in ((text, False), ("def _():\n" + text, True)):
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):  # ValueError: a null byte
            continue
        body = [*tree.body[0].body, *tree.body[1:]] if in_function else tree.body
        return any(not isinstance(node, ast.Expr) for node in body)
    return False


def _leading_code(text: str) -> str | None:
    """Rule 3 of :func:`extract_code`. Cuts are tried only before unindented lines (where a new
    statement, or prose, starts), longest first: a few parses per response."""
    lines = text.split("\n")  # not splitlines(), which also splits at characters in string literals
    starts = [0, *(i for i, line in enumerate(lines) if _CODE_START.match(line))][:2]
    for start in dict.fromkeys(starts):
        ends = [
            i for i in range(len(lines), start, -1) if i == len(lines) or lines[i][:1] not in ("", " ", "\t")
        ]
        for end in ends:
            candidate = "\n".join(lines[start:end])
            if _is_code(candidate):
                return candidate
    return None


def program_for(fmt: str, problem: Problem, code: str) -> str:
    """The test program for ``code``: it exits 0 after its last statement iff every test passes.

    MBPP: the code, then the problem's setup code (which uses the code's classes: tasks 367 and
    927 build trees of the solution's ``Node``), then each assert. HumanEval: the prompt, then
    the code, then the ``check`` function and ``check(entry_point)``. The prompt comes first
    whether the code continues its function's body (a completion) or defines the whole function
    itself: the answer then replaces the docstring-only stub, and still has the prompt's imports
    (``from typing import List``) and helper functions (HumanEval/10's ``is_palindrome``) to use.
    """
    meta = problem.meta
    if fmt == "mbpp":
        if not meta.get("tests"):
            raise ValueError(f"{problem.id}: no tests in meta['tests']")
        parts = [code, meta.get("setup") or "", *meta["tests"]]
    elif fmt == "humaneval":
        if not meta.get("test") or not meta.get("entry_point"):
            raise ValueError(f"{problem.id}: meta lacks 'test' or 'entry_point'")
        parts = [problem.question, code, meta["test"], f"check({meta['entry_point']})"]
    else:
        raise ValueError(f"unknown code format {fmt!r}; known formats: {list(FORMATS)}")
    return "\n\n".join(part.rstrip() for part in parts if part.strip()) + "\n"


def check(
    fmt: str, response: str, problem: Problem, limits: Limits | None = None
) -> tuple[bool, str | None, str]:
    """Judge one response: (correct, extracted code, status).

    status: "ok" (the tests ran to a verdict, pass or fail), "no_answer" (no code found), a
    sandbox status for code that was stopped ("timeout", "memory", "output_limit", "blocked"),
    or "error" (no verdict is possible: the problem has no tests, or the sandbox cannot start).
    All but "ok" with a pass count as wrong. The extracted code is cut to MAX_RECORDED_CHARS.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown code format {fmt!r}; known formats: {list(FORMATS)}")
    code = extract_code(response)
    if code is None:
        return False, None, "no_answer"
    recorded = code[:MAX_RECORDED_CHARS]
    try:
        execution = run_python(program_for(fmt, problem, code), limits or DEFAULT_LIMITS)
    except (ValueError, OSError):
        return False, recorded, "error"
    status = "ok" if execution.status in VERDICT_STATUSES else execution.status
    return execution.status == "passed", recorded, status
