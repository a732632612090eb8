"""Small typed records that stages exchange through artifacts on disk.

Every record is a flat dataclass that round-trips through one JSON line, so artifacts are
readable with ``datasets.load_dataset("json", ...)`` as well as with :func:`read_jsonl`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Problem:
    """One reasoning problem in the schema every dataset loads into."""

    id: str
    question: str
    answer: str  # the final answer, as text (a number, a LaTeX expression, ...)
    solution: str = ""  # a reference solution, when the dataset has one
    level: int | None = None  # difficulty level
    subject: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # dataset-specific (toy: the tree)


@dataclass
class Sample:
    """One generated solution, addressed by ``key`` (model, dataset, problem, index, params, seed)."""

    key: str
    model: str
    dataset: str
    problem_id: str
    index: int  # j in "sample j of problem i": budgets are prefixes of one sequence
    seed: int
    params: dict[str, Any]
    prompt: str
    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str  # "stop" (end of sequence) or "length"
    backend: str
    seconds: float  # wall time of the batch this sample was generated in, shared pro rata


@dataclass
class Verdict:
    """The verifier's judgement of one sample."""

    key: str
    problem_id: str
    index: int
    extracted: str | None
    correct: bool  # final answer matches the ground truth
    steps_correct: bool | None  # every reasoning step right (None: not checkable here)
    status: str  # ok (judged) / no_answer / unparsable / malformed / timeout / error; code: memory / output_limit / blocked


def to_json(record: Any) -> str:
    return json.dumps(asdict(record), ensure_ascii=False, sort_keys=True)


def from_dict(cls: type[T], row: dict[str, Any], where: str = "") -> T:
    """Build ``cls`` from a JSON row, naming the missing or unknown keys when it does not fit."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}  # type: ignore[arg-type]
    missing, unknown = sorted(required - set(row)), sorted(set(row) - known)
    if missing or unknown:
        raise ValueError(f"{where}: not a {cls.__name__} record (missing keys {missing}, unknown keys {unknown})")
    return cls(**row)


def json_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """(``file:line``, value) for each non-blank line of a JSONL file; a bad line raises naming both."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
            yield where, value


def read_jsonl(path: Path, cls: type[T]) -> Iterator[T]:
    """Records of ``cls`` from a JSONL file; a bad line raises with the file and line number."""
    for where, row in json_lines(path):
        yield from_dict(cls, row, where)


def write_jsonl(path: Path, records: Iterable[Any]) -> int:
    """Write records atomically (temp file + rename): readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(to_json(record) + "\n")
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
