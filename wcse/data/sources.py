"""Raw benchmark rows (a local JSONL file or the HF hub) converted to ``Problem`` records.

One converter per row *format*, because several datasets share a format (MATH train, MATH-500
and Functional MATH) and one dataset can be read from differently laid out sources. A local
path always wins over the hub and is never silently replaced by a download: a missing file
is an error, so a run cannot quietly use different data than the one it was pointed at.
"""

from __future__ import annotations

import functools
import itertools
import logging
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetGenerationError

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
    answer = row.get("answer")
    if answer is None:
        answer = last_boxed(solution)
    if answer is None:
        raise RowError("missing key 'answer' and no \\boxed answer in 'solution'")
    problem_id = row.get("unique_id") or f"{prefix}-{split}-{index}"
    if not answer:
        # Kept, not dropped, so split sizes match the published ones (MATH train has two such rows).
        log.warning("%s: empty gold answer; no sample of it can be verified correct", problem_id)
    return Problem(
        id=problem_id,
        question=_text(row, "problem"),
        answer=str(answer),
        solution=solution,
        level=_level(row.get("level")),
        subject=row.get("subject") or row.get("type"),
    )


def _mbpp(row: dict[str, Any], split: str, index: int) -> Problem:
    """MBPP: correctness is passing the tests; the first test shows the expected signature."""
    tests = _field(row, "test_list")
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


FORMATS: dict[str, Callable[[dict[str, Any], str, int], Problem]] = {
    "gsm8k": _gsm8k,
    "math": _math,
    "mbpp": _mbpp,
    "humaneval": _humaneval,
    "functional_math": functools.partial(_math, prefix="functional_math"),
}


def _rows(
    fmt: str, split: str, path: str | None, hub: str | None, hub_name: str | None, hub_split: str | None
) -> tuple[str, Iterable[dict[str, Any]]]:
    """(a name for error messages, the raw rows) from the local file, else from the hub."""
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"dataset file not found: {path}")
        try:
            return path, datasets.load_dataset("json", data_files=path, split="train")
        except DatasetGenerationError as err:
            raise ValueError(f"{path}: not a JSON-lines file ({err.__cause__})") from err
    if hub is None:
        raise ValueError(f"format {fmt!r}, split {split!r}: neither a local path nor a hub dataset is given")
    hub_split = hub_split or split
    return f"{hub} ({hub_name or 'default'}, {hub_split})", datasets.load_dataset(hub, hub_name, split=hub_split)


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

    A row that does not fit ``fmt`` raises ValueError naming the source, the 1-based row
    number (the line of a JSONL file without blank lines) and what is missing.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; known formats: {sorted(FORMATS)}")
    source, rows = _rows(fmt, split, path, hub, hub_name, hub_split)
    convert = FORMATS[fmt]
    problems = []
    for index, row in enumerate(itertools.islice(rows, limit)):
        try:
            problems.append(convert(row, split, index))
        except RowError as err:
            raise ValueError(f"{source}: row {index + 1}: {err} (format {fmt!r})") from None
    return problems


def carve_validation(train: list[Problem], size: int, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Split ``size`` seeded problems off ``train``: (the rest, validation), both in input order.

    The draw is over problems sorted by id, so the same problems are held out however the
    input list happens to be ordered.
    """
    if not 0 <= size <= len(train):
        raise ValueError(f"validation size {size} is not within 0..{len(train)} (the train split's size)")
    by_id = sorted(range(len(train)), key=lambda i: train[i].id)
    held_out = {by_id[j] for j in random.Random(seed).sample(range(len(train)), size)}
    rest = [p for i, p in enumerate(train) if i not in held_out]
    validation = [p for i, p in enumerate(train) if i in held_out]
    return rest, validation
