"""Small typed records that stages exchange through artifacts on disk.

Every record is a flat dataclass that round-trips through one JSON line, so artifacts are
readable with ``datasets.load_dataset("json", ...)`` as well as with :func:`read_jsonl`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CHECKSUM = "checksum"  # the key of a checked line's digest (:func:`to_checked_json`)


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
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length" (cut by max_new_tokens)
    backend: str
    seconds: float  # wall time of the batch this sample was generated in, shared pro rata
    stop_string: str | None = None  # the one of params["stop"] that ended it; None: EOS or length (or an old store)

    @property
    def response(self) -> str:
        """What is graded and trained on: the text up to its first stop string.

        The backends already end the text there; this also cuts one that still runs on into the
        next exemplar (a server that ignored ``stop``), so it is judged on its first answer.
        """
        return cut_at_stop(self.text, self.params.get("stop") or ())[0]

    @property
    def finished(self) -> bool:
        """Whether the answer ended (EOS or a stop string) rather than being cut by max_new_tokens."""
        return self.finish_reason == "stop" or cut_at_stop(self.text, self.params.get("stop") or ())[1] is not None


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


@dataclass
class StepJudgement:
    """A steps judge's verdict on one correct sample's reasoning (metrics/<role>.steps_judged.jsonl),
    read back beside human labels by ``python -m wcse.label``."""

    key: str  # the sample's key
    steps_correct: bool
    judge: str  # the judge's name@fingerprint


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` before the stop string that completes first in it, and that string; else (text, None).

    The one stop-string rule of every backend and of the verifier. "Completes first" (ties: list
    order) is how a generation that is checked after every token stops, and is vLLM's rule, so
    the same tokens give the same text whichever backend, or the verifier afterwards, cut them.
    """
    best: tuple[int, int, str] | None = None  # (end, start, stop string)
    for stop in stops:
        start = text.find(stop)
        if start >= 0 and (best is None or start + len(stop) < best[0]):
            best = (start + len(stop), start, stop)
    return (text, None) if best is None else (text[: best[1]], best[2])


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
    return _write_lines(path, map(to_json, records))


def checksum(row: dict[str, Any]) -> str:
    """A short SHA-256 of a row's canonical JSON, its own ``checksum`` key left out.

    The same text :func:`to_json` writes, so a line read back and parsed gives the digest it was
    written with unless a byte of it changed (JSON floats and strings round-trip exactly)."""
    body = {k: v for k, v in row.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def to_checked_json(record: Any) -> str:
    """:func:`to_json` plus a ``checksum`` key that :func:`verify_checksum` checks on reading."""
    row = asdict(record)
    row[CHECKSUM] = checksum(row)
    return json.dumps(row, ensure_ascii=False, sort_keys=True)


def verify_checksum(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without its checksum; ValueError when it has none or the row no longer matches it."""
    body = dict(row)
    stored = body.pop(CHECKSUM, None)
    if stored is None:
        raise ValueError(f"no {CHECKSUM!r} key")
    if stored != checksum(body):
        raise ValueError(f"checksum mismatch (the line was changed after it was written: {stored} != {checksum(body)})")
    return body


def write_checked_jsonl(path: Path, records: Iterable[Any]) -> int:
    """:func:`write_jsonl` with a checksum on every line (:func:`to_checked_json`)."""
    return _write_lines(path, map(to_checked_json, records))


def _write_lines(path: Path, lines: Iterable[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
                count += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
