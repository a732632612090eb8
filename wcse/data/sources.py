"""Raw benchmark rows (a local JSONL file or the HF hub) converted to ``Problem`` records.

One converter per row *format*, because several datasets share a format (MATH train, MATH-500
and Functional MATH) and one dataset can be read from differently laid out sources. A local
path always wins over the hub and is never silently replaced by a download: a missing file
is an error, so a run cannot quietly use different data than the one it was pointed at.

Local files are read here, not by ``datasets``, so that every defect is named by file and line:
UTF-8 (a byte-order mark is dropped, CRLF line ends are fine), JSON lines or one JSON list of
rows, never empty. Within a split, two rows with the same problem id are an error naming both
(the shipped files have none: ids key samples, verdicts and metrics, so a duplicate would
silently merge two problems). A gold answer must be text (or a JSON number); a list or an
object is an error rather than its Python ``str()``.

A converter returns None for a row that is well formed but is no problem: an OASST1 file holds
whole conversation trees, and only their first-turn prompts are problems.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets

from wcse.errors import DataError, MissingInput
from wcse.records import Problem
from wcse.verify.answers import last_boxed

log = logging.getLogger(__name__)


class RowError(ValueError):
    """A row that does not fit its format; the loader adds the file (or hub id) and row number."""


def _field(row: dict[str, Any], key: str) -> Any:
    """A required field; ``datasets`` gives None where one row lacks a key that others have."""
    value = row.get(key)
    if value is None:
        raise RowError(f"missing key {key!r}")
    return value


def _text(row: dict[str, Any], key: str) -> str:
    value = _field(row, key)
    if not isinstance(value, str):
        raise RowError(f"key {key!r} is {type(value).__name__}, not text")
    return value


def _answer(row: dict[str, Any], key: str) -> str | None:
    """A gold answer as text: text as is, a JSON number written out; None when absent."""
    value = row.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise RowError(f"key {key!r} is a JSON {type(value).__name__} ({json.dumps(value)[:80]}), not a single answer")


def _level(value: Any) -> int | None:
    """MATH train writes "Level 3" (and "Level ?" twice), MATH-500 writes 3."""
    if value is None or isinstance(value, int):
        return value
    digits = re.search(r"\d+", str(value))
    return int(digits.group()) if digits else None


def _gsm8k(row: dict[str, Any], split: str, index: int) -> Problem:
    """GSM8K: the reference answer is the worked solution, its final number after ``####``."""
    reference = _text(row, "answer")
    if "####" not in reference:
        raise RowError("key 'answer' has no '####' final answer")
    final = reference.rsplit("####", 1)[1].strip().replace(",", "")
    if not final:
        raise RowError("key 'answer' is empty after '####'")
    return Problem(id=f"gsm8k-{split}-{index}", question=_text(row, "question"), answer=final, solution=reference)


def _math(row: dict[str, Any], split: str, index: int, prefix: str = "math") -> Problem:
    """MATH-style rows: MATH train (no ``answer``; the last box of the solution) or MATH-500."""
    solution = _text(row, "solution")
    answer = _answer(row, "answer")
    if answer is None:
        answer = last_boxed(solution)
    if answer is None:
        raise RowError("missing key 'answer' and no \\boxed answer in 'solution'")
    unique_id = row.get("unique_id")
    if unique_id is not None and not isinstance(unique_id, str):
        raise RowError(f"key 'unique_id' is {type(unique_id).__name__}, not text")
    problem_id = unique_id or f"{prefix}-{split}-{index}"
    if not answer:
        # Kept, not dropped, so split sizes match the published ones (MATH train has two such rows).
        log.warning("%s: empty gold answer; no sample of it can be verified correct", problem_id)
    return Problem(
        id=problem_id,
        question=_text(row, "problem"),
        answer=answer,
        solution=solution,
        level=_level(row.get("level")),
        subject=row.get("subject") or row.get("type"),
    )


def _mbpp(row: dict[str, Any], split: str, index: int) -> Problem:
    """MBPP: correctness is passing the tests; the first test shows the expected signature."""
    tests = _field(row, "test_list")
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise RowError("key 'test_list' is not a list of test strings")
    if not tests:
        raise RowError("key 'test_list' is empty")
    return Problem(
        id=f"mbpp-{_field(row, 'task_id')}",
        question=f"{_text(row, 'text')}\nYour code should pass this test:\n{tests[0]}",
        answer="",
        solution=_text(row, "code"),
        meta={"tests": list(tests), "setup": row.get("test_setup_code") or ""},
    )


def _humaneval(row: dict[str, Any], split: str, index: int) -> Problem:
    """HumanEval: the prompt is a signature plus docstring; ``test`` defines ``check(candidate)``."""
    return Problem(
        id=_text(row, "task_id"),
        question=_text(row, "prompt"),
        answer="",
        solution=_text(row, "canonical_solution"),
        meta={"test": _text(row, "test"), "entry_point": _text(row, "entry_point")},
    )


def _oasst1(row: dict[str, Any], split: str, index: int) -> Problem | None:
    """OASST1 messages (the hub's message records): a problem per first-turn prompt, the
    prompter message at the root of a conversation tree that is neither deleted nor rejected in
    review. Replies and removed prompts are skipped, not errors. No reference answer: the arm
    is label-free (``answer`` is empty)."""
    parent = row.get("parent_id")
    if parent is not None:
        if not isinstance(parent, str):
            raise RowError(f"key 'parent_id' is {type(parent).__name__}, not text or null")
        return None  # a reply
    role = _text(row, "role")
    if role != "prompter":
        raise RowError(f"key 'role' is {role!r} in a first message (parent_id null), not 'prompter'")
    deleted, review = row.get("deleted", False), row.get("review_result")
    if not isinstance(deleted, bool):
        raise RowError(f"key 'deleted' is {type(deleted).__name__}, not true or false")
    if review is not None and not isinstance(review, bool):
        raise RowError(f"key 'review_result' is {type(review).__name__}, not true, false or null")
    if deleted or review is False:
        return None
    text = _text(row, "text")
    if not text.strip():
        raise RowError("key 'text' is empty")
    lang = row.get("lang")
    return Problem(
        id=f"oasst1-{_text(row, 'message_id')}",
        question=text,
        answer="",
        meta={"lang": lang} if isinstance(lang, str) else {},
    )


def _ifeval(row: dict[str, Any], split: str, index: int) -> Problem:
    """IFEval: a prompt with verifiable instructions (``wcse.verify.ifeval`` checks them); no
    reference answer. ``kwargs`` is cleaned as IFEval's own input file is: the hub's copy writes
    every checker argument into every entry, null where unused, and only the others are kept."""
    key = _field(row, "key")
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise RowError(f"key 'key' is {type(key).__name__}, not a number or text")
    ids, kwargs = _field(row, "instruction_id_list"), _field(row, "kwargs")
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise RowError("key 'instruction_id_list' is not a list of instruction ids (text)")
    if not ids:
        raise RowError("key 'instruction_id_list' is empty")
    if not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
        raise RowError("key 'kwargs' is not a list of objects (one per instruction)")
    if len(kwargs) != len(ids):
        raise RowError(f"key 'kwargs' has {len(kwargs)} entries but 'instruction_id_list' has {len(ids)}")
    return Problem(
        id=f"ifeval-{key}",
        question=_text(row, "prompt"),
        answer="",
        meta={
            "instruction_id_list": list(ids),
            "kwargs": [{k: v for k, v in entry.items() if v is not None} for entry in kwargs],
        },
    )


# A converter returns None for a row that is no problem (see the module docstring).
FORMATS: dict[str, Callable[[dict[str, Any], str, int], Problem | None]] = {
    "gsm8k": _gsm8k,
    "math": _math,
    "mbpp": _mbpp,
    "humaneval": _humaneval,
    "functional_math": functools.partial(_math, prefix="functional_math"),
    "oasst1": _oasst1,
    "ifeval": _ifeval,
}


Row = tuple[int, int | None, Any]  # (1-based row number, its line in a local file, the row)


def _decode(path: str) -> str:
    """A local file's text: UTF-8 with or without a byte-order mark; anything else names the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.start + 1].hex()
        raise DataError(f"{path}: line {line}: not UTF-8 (byte 0x{bad}: {err.reason}); save the file as UTF-8") from None


def _local_rows(path: str) -> Iterator[Row]:
    """The rows of a JSON-lines file, or of a file holding one JSON list of rows."""
    if not Path(path).is_file():
        raise MissingInput(f"dataset file not found: {path}")
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty (no rows)")
    body = text.lstrip()
    if body.startswith("["):
        yield from _json_list(path, text, len(text) - len(body))
        return
    rows = (line for line in enumerate(text.split("\n"), 1) if line[1].strip())
    for number, (lineno, line) in enumerate(rows, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {lineno}: not a JSON-lines file ({err.msg} at column {err.colno})") from None
        yield number, lineno, row


def _json_list(path: str, text: str, start: int) -> Iterator[Row]:
    """The items of one JSON list (``[`` at ``start``), each with the line it starts on."""
    decoder, number, line, counted = json.JSONDecoder(), 0, 1, 0

    def line_at(at: int) -> int:  # lines are counted forward only, so a long list stays linear
        nonlocal line, counted
        line, counted = line + text.count("\n", counted, at), at
        return line

    def skip(at: int) -> int:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        return at

    pos = skip(start + 1)
    if text.startswith("]", pos):
        raise DataError(f"{path}: the file is an empty JSON list (no rows)")
    while True:
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {line_at(err.pos)}: invalid JSON in the list of rows ({err.msg})") from None
        number += 1
        yield number, line_at(pos), row
        pos = skip(end)
        if text.startswith(",", pos):
            pos = skip(pos + 1)
        elif text.startswith("]", pos):
            if skip(pos + 1) < len(text):
                raise DataError(f"{path}: line {line_at(skip(pos + 1))}: text after the end of the JSON list")
            return
        else:
            raise DataError(f"{path}: line {line_at(pos)}: expected ',' or ']' after row {number} of the JSON list")


def _rows(
    fmt: str, split: str, path: str | None, hub: str | None, hub_name: str | None, hub_split: str | None
) -> tuple[str, Iterable[Row]]:
    """(a name for error messages, the numbered raw rows) from the local file, else from the hub."""
    if path is not None:
        return path, _local_rows(path)
    if hub is None:
        raise ValueError(f"format {fmt!r}, split {split!r}: neither a local path nor a hub dataset is given")
    hub_split = hub_split or split
    rows = datasets.load_dataset(hub, hub_name, split=hub_split)
    return f"{hub} ({hub_name or 'default'}, {hub_split})", ((i, None, row) for i, row in enumerate(rows, 1))


def _at(source: str, number: int, line: int | None) -> str:
    return f"{source}: row {number}" + ("" if line in (None, number) else f" (line {line})")


def load_split(
    fmt: str,
    split: str,
    *,
    path: str | None = None,
    hub: str | None = None,
    hub_name: str | None = None,
    hub_split: str | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """The first ``limit`` (default: all) problems of one split, from ``path`` or else the hub.

    A row that does not fit ``fmt``, or repeats an earlier row's id, raises DataError naming the
    source, the 1-based row number (and its line in a local file where that differs: blank
    lines, a JSON list) and what is wrong. A missing file raises MissingInput. Rows the format
    skips (an OASST1 reply) are not problems and do not count towards ``limit``; reading stops
    once ``limit`` problems are in.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; known formats: {sorted(FORMATS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit={limit}: must be >= 0 (or None: all problems)")
    source, rows = _rows(fmt, split, path, hub, hub_name, hub_split)
    convert = FORMATS[fmt]
    problems: list[Problem] = []
    first: dict[str, str] = {}  # id -> where it was first seen
    skipped = 0
    for number, line, row in rows if limit != 0 else ():
        at = _at(source, number, line)
        try:
            if not isinstance(row, dict):
                raise RowError(f"a JSON {type(row).__name__}, not an object with the format's keys")
            problem = convert(row, split, number - 1)
        except RowError as err:
            raise DataError(f"{at}: {err} (format {fmt!r})") from None
        if problem is None:
            skipped += 1
            continue
        if problem.id in first:
            raise DataError(f"{at}: duplicate problem id {problem.id!r}, already at {first[problem.id]} (format {fmt!r})")
        first[problem.id] = at.removeprefix(f"{source}: ")
        problems.append(problem)
        if len(problems) == limit:  # no row past the last one wanted is read
            break
    if skipped and not problems:
        raise DataError(f"{source}: none of its {skipped} rows is a problem of format {fmt!r} (all were skipped)")
    return problems


def without(problems: list[Problem], other: list[Problem]) -> list[Problem]:
    """``problems`` less any that is also in ``other``, by id or by question text: MATH-500's
    problems carry MATH test's ids locally but not on the hub, where only the text matches."""
    ids, questions = {p.id for p in other}, {" ".join(p.question.split()) for p in other}
    return [p for p in problems if p.id not in ids and " ".join(p.question.split()) not in questions]


def seeded_subset(problems: list[Problem], size: int, seed: int) -> list[Problem]:
    """``size`` seeded problems of ``problems``, in input order.

    The draw is over problems sorted by id, so the same problems are chosen however the input
    list happens to be ordered.
    """
    if not 0 <= size <= len(problems):
        raise ValueError(f"subset size {size} is not within 0..{len(problems)} (the problems available)")
    by_id = sorted(range(len(problems)), key=lambda i: problems[i].id)
    chosen = {by_id[j] for j in random.Random(seed).sample(range(len(problems)), size)}
    return [p for i, p in enumerate(problems) if i in chosen]
