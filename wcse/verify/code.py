"""Code answers (MBPP, HumanEval): extract the program from a response, run it against the tests.

A response is correct when its code passes every test of its problem. The code and the tests
run in two sandboxed processes (:func:`wcse.verify.sandbox.run_judged`, :mod:`wcse.verify.remote`),
so the code can neither see the tests nor fake their verdict. The verdict mirrors
:func:`wcse.verify.answers.check`: ``(correct, extracted code, status)``.
"""

from __future__ import annotations

import ast
import builtins
import re
import sys
from dataclasses import dataclass

from wcse.records import Problem
from wcse.verify.remote import CANDIDATE
from wcse.verify.sandbox import DEFAULT_LIMITS, Limits, run_judged

FORMATS = ("mbpp", "humaneval")
# Sandbox statuses that are a verdict on the code rather than on its conduct.
VERDICT_STATUSES = ("passed", "failed")
MAX_RECORDED_CHARS = 8192  # the extracted code kept in a Verdict (the whole of it is what runs)
# Unfenced code is looked for in this much of a response (16 times the longest MBPP / HumanEval
# reference solution): parsing costs ~2 s a megabyte, and a runaway response can be that long.
MAX_UNFENCED_CHARS = 1 << 15
MAX_PARSES = 4  # per place where unfenced code may start

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
       than state expressions (so a lone word such as "Sure" is not code). Trailing prose is cut
       off; so is all past the first MAX_UNFENCED_CHARS (a runaway response is not parsed whole).

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


def _parse(text: str) -> tuple[bool, int | None]:
    """Whether ``text`` parses, as a module or as the body of a function, into something that
    does more than state expressions; and, where it does not parse, the last line (1-based)
    that a parse reached, else None: no text that keeps that line parses either."""
    reached = 1
    for prefix in ("", "def _():\n"):
        try:
            tree = ast.parse(prefix + text)
        except SyntaxError as err:
            reached = max(reached, (err.lineno or 1) - prefix.count("\n"))
            continue
        except (RecursionError, MemoryError):  # nesting too deep to build: no line to go by
            reached = max(reached, text.count("\n") + 1)
            continue
        body = [*tree.body[0].body, *tree.body[1:]] if prefix else tree.body
        return any(not isinstance(node, ast.Expr) for node in body), None
    return False, reached


def _leading_code(text: str) -> str | None:
    """Rule 3 of :func:`extract_code`, in the first MAX_UNFENCED_CHARS. Cuts are tried only before
    unindented lines (where a new statement, or prose, starts), longest first; after a failed
    parse, the next cut is before the line where the parse failed (no longer cut can parse), so
    a response takes a few parses, at most MAX_PARSES per start, of at most MAX_UNFENCED_CHARS."""
    if len(text) > MAX_UNFENCED_CHARS:
        text = text[:MAX_UNFENCED_CHARS].rpartition("\n")[0]  # whole lines only
    text = text.split("\0", 1)[0]  # a null byte is never code
    lines = text.split("\n")  # not splitlines(), which also splits at characters in string literals
    first_code = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), 0)
    cuts = [i for i in range(1, len(lines)) if lines[i][:1] not in ("", " ", "\t")] + [len(lines)]
    for start in dict.fromkeys((0, first_code)):
        end = len(lines)
        for _ in range(MAX_PARSES):
            candidate = "\n".join(lines[start:end])
            is_code, reached = _parse(candidate)
            if reached is None:
                if is_code:
                    return candidate
                break  # it parses but states nothing, and so would any shorter cut
            end = max((cut for cut in cuts if start < cut < min(end, start + reached)), default=None)
            if end is None:
                break
    return None


@dataclass(frozen=True)
class Programs:
    """The two programs of one check: the code, run untrusted, and its tests, run trusted with
    the code's names as remote objects (:class:`wcse.verify.remote.JudgeGlobals`)."""

    candidate: str
    judge: str


def programs_for(fmt: str, problem: Problem, code: str) -> Programs:
    """The programs that run ``code`` against the tests of ``problem``.

    MBPP: the candidate is the code, then the problem's setup code (which uses the code's
    classes: tasks 367 and 927 build trees of the solution's ``Node``, whose roots the tests
    then pass to the code as handles); the judge is the asserts. HumanEval: the candidate is the
    prompt, then the code, whether the code continues its function's body (a completion) or
    defines the whole function itself: the answer then replaces the docstring-only stub, and
    still has the prompt's imports (``from typing import List``) and helper functions
    (HumanEval/10's ``is_palindrome``) to use. The judge is the prompt too (the tests use its
    helpers, HumanEval/38's ``encode_cyclic``: the prompt's own, not the code's), then the
    ``check`` function, called on the candidate's entry point, which is also what the entry
    point's name means to the tests (HumanEval/33 compares ``candidate`` with ``sort_third``).
    """
    meta = problem.meta
    if fmt == "mbpp":
        if not meta.get("tests"):
            raise ValueError(f"{problem.id}: no tests in meta['tests']")
        bound = _shadowing_names(problem.solution)
        judge = [*(f"{name} = {CANDIDATE}({name!r})" for name in bound), *meta["tests"]]
        return Programs(_join(code, meta.get("setup") or ""), _join(*judge))
    if fmt == "humaneval":
        if not meta.get("test") or not meta.get("entry_point"):
            raise ValueError(f"{problem.id}: meta lacks 'test' or 'entry_point'")
        entry = meta["entry_point"]
        call = f"{entry} = {CANDIDATE}({entry!r})\ncheck({entry})"
        return Programs(_join(problem.question, code), _join(problem.question, meta["test"], call))
    raise ValueError(f"unknown code format {fmt!r}; known formats: {list(FORMATS)}")


def _join(*parts: str) -> str:
    return "\n\n".join(part.rstrip() for part in parts if part.strip()) + "\n"


def _shadowing_names(solution: str) -> list[str]:
    """The names that the reference solution defines at its top level although they are also
    builtins or standard modules (MBPP task 126's ``sum``): to the tests, those are the code's.
    Any other builtin or module that the tests use is their own, whatever the code defines."""
    try:
        tree = ast.parse(solution)
    except (SyntaxError, ValueError):
        return []
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return sorted(name for name in defined if hasattr(builtins, name) or name in sys.stdlib_module_names)


def problem_format(fmt: str, problem: Problem) -> str:
    """The code format ``problem`` is judged in: the one of the tests it carries (MBPP's asserts in
    ``meta["tests"]``, HumanEval's ``check`` in ``meta["test"]`` with its ``entry_point``), else ``fmt``.

    A code dataset may train on one format and test on the other (``dataset=mbpp``: MBPP train and
    validation, HumanEval test), and the evaluator grades every split in the dataset's format; a
    HumanEval problem judged as MBPP would have no asserts, so every verdict would be ``error``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown code format {fmt!r}; known formats: {list(FORMATS)}")
    meta = problem.meta
    if meta.get("tests"):
        return "mbpp"
    if meta.get("test") and meta.get("entry_point"):
        return "humaneval"
    return fmt


def check(
    fmt: str, response: str, problem: Problem, limits: Limits | None = None
) -> tuple[bool, str | None, str]:
    """Judge one response: (correct, extracted code, status). ``fmt`` is a code format; the
    problem's own tests decide which (:func:`problem_format`).

    status: "ok" (the tests ran to a verdict, pass or fail), "no_answer" (no code found), a
    sandbox status for code that was stopped ("timeout", "memory", "output_limit", "blocked"),
    or "error" (no verdict is possible: the problem has no tests, or the sandbox cannot start).
    All but "ok" with a pass count as wrong. The extracted code is cut to MAX_RECORDED_CHARS.
    """
    fmt = problem_format(fmt, problem)
    code = extract_code(response)
    if code is None:
        return False, None, "no_answer"
    recorded = code[:MAX_RECORDED_CHARS]
    try:
        programs = programs_for(fmt, problem, code)
        judged = run_judged(programs.candidate, programs.judge, limits or DEFAULT_LIMITS)
    except (ValueError, OSError):
        return False, recorded, "error"
    status = "ok" if judged.status in VERDICT_STATUSES else judged.status
    return judged.status == "passed", recorded, status
