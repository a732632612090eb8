"""Grade your own predictions with wcse's verifiers.

    python -m wcse.verify --dataset math --mode lenient preds.jsonl --out graded.jsonl
    python -m wcse.verify --dataset mbpp --problems mbpp.jsonl preds.jsonl

Answer datasets (math, gsm8k, toy_arith, functional_math): each input row needs ``response`` (the
model output) and ``answer`` (the gold final answer). Code datasets (mbpp, humaneval): each row
needs ``response`` and ``task_id``, the task's id in ``--problems``, the dataset's own JSONL file
(MBPP's ``mbpp.jsonl``, HumanEval's ``HumanEval.jsonl``), whose tests the code is run against in
the sandbox: ``11`` or ``"mbpp-11"`` for MBPP, ``"HumanEval/0"`` for HumanEval.
Every other key is passed through. Each row is written back with ``correct``, ``extracted`` and
``status`` added (to ``--out``, else to stdout), and the accuracy and the count per status are
printed at the end. All rows are read and checked, and the output file opened, before any is
graded, and the output is written atomically: a bad row or an unwritable ``--out`` costs nothing,
and a failed run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import IO, Any

from wcse.records import Problem, json_lines
from wcse.verify import answers
from wcse.verify.code import FORMATS as CODE_DATASETS
from wcse.verify.pool import default_workers
from wcse.verify.verifier import check_all

ANSWER_DATASETS = ("math", "gsm8k", "toy_arith", "functional_math")
DATASETS = (*ANSWER_DATASETS, *CODE_DATASETS)


def load_problems(dataset: str, path: Path) -> dict[str, Problem]:
    """The code problems of ``path`` by every id a row may use: the file's ``task_id`` as text,
    and wcse's problem id (``mbpp-11``)."""
    from wcse.data.sources import load_split  # imports `datasets`: only for the code datasets

    try:
        problems = load_split(dataset, "test", path=str(path))
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"--problems: {err}") from None
    return {key: p for p in problems for key in (p.id, p.id.removeprefix("mbpp-"))}


def read_rows(path: Path, dataset: str, problems: dict[str, Problem] | None = None) -> list[tuple[dict[str, Any], Problem]]:
    """The rows of ``path`` with the problem each is graded against; a bad one raises naming the
    file, the line and the key. ``problems``: those of a code dataset (:func:`load_problems`)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    graded = []
    for where, row in json_lines(path):
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
        for key in ("response", "answer" if problems is None else "task_id"):
            if key not in row:
                raise ValueError(f"{where}: missing key {key!r}")
        if not isinstance(row["response"], str):
            raise ValueError(f"{where}: key 'response' must be a string")
        if problems is None:
            if not isinstance(row["answer"], str | int | float) or isinstance(row["answer"], bool):
                raise ValueError(f"{where}: key 'answer' must be a string or a number")
            graded.append((row, Problem(id=where, question="", answer=str(row["answer"]))))
            continue
        task_id = row["task_id"]
        if not isinstance(task_id, str | int) or isinstance(task_id, bool):
            raise ValueError(f"{where}: key 'task_id' must be a string or an integer")
        if str(task_id) not in problems:
            raise ValueError(f"{where}: key 'task_id': {task_id!r} is not a {dataset} task of --problems")
        graded.append((row, problems[str(task_id)]))
    return graded


def grade(
    rows: list[tuple[dict[str, Any], Problem]], dataset: str, mode: str, workers: int | None, timeout_s: float | None
) -> list[dict[str, Any]]:
    """The rows with ``correct``, ``extracted`` and ``status``, in input order."""
    checks = check_all(dataset, [(p, row["response"]) for row, p in rows], mode, workers=workers, timeout_s=timeout_s)
    return [
        {**row, "correct": c.correct, "extracted": c.extracted, "status": c.status}
        for (row, _), c in zip(rows, checks, strict=True)
    ]


def open_output(path: Path) -> tuple[IO[str], str]:
    """A temporary file beside ``path`` (its directory created) and its name, to be renamed onto
    ``path`` once written: opened before grading, so that an unwritable ``--out`` fails first."""
    if path.is_dir():
        raise ValueError(f"--out {path}: is a directory")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(tmp, "w", encoding="utf-8"), str(tmp)
    except OSError as err:
        raise ValueError(f"--out {path}: cannot write there ({err.strerror or err})") from None


def _at_least(minimum: float, kind: type[int] | type[float]) -> Any:
    """An argparse type: a number >= ``minimum`` (> 0 for floats), else an error naming the flag."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum or (kind is float and value <= 0):
            raise argparse.ArgumentTypeError(f"must be {'>=' if kind is int else '>'} {minimum}, got {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wcse.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="JSONL rows with 'response' and 'answer' (code: 'task_id')")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--problems", type=Path, help="code datasets: the dataset's JSONL file, with the tests")
    parser.add_argument("--mode", default="lenient", choices=answers.MODES, help="strict filters training data; lenient evaluates")
    parser.add_argument("--out", type=Path, help="where graded rows go (default: stdout)")
    parser.add_argument("--workers", type=_at_least(1, int), default=default_workers(), help="worker processes, >= 1 (default: the usable CPUs)")
    parser.add_argument("--timeout", type=_at_least(0, float), default=None, help="seconds per row before it is graded 'timeout'")
    args = parser.parse_args(argv)
    if (args.dataset in CODE_DATASETS) != (args.problems is not None):
        parser.error(f"--problems FILE is needed for {' and '.join(CODE_DATASETS)}, and only for them")
    try:
        problems = load_problems(args.dataset, args.problems) if args.problems else None
        rows = read_rows(args.input, args.dataset, problems)
        out, tmp = open_output(args.out) if args.out else (sys.stdout, None)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    try:
        graded = grade(rows, args.dataset, args.mode, args.workers, args.timeout)
        out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in graded)
        if tmp is not None:
            out.close()
            os.replace(tmp, args.out)
    finally:
        if tmp is not None:
            out.close()
            if os.path.exists(tmp):
                os.unlink(tmp)
    report = sys.stdout if args.out else sys.stderr
    n_correct = sum(row["correct"] for row in graded)
    print(f"accuracy: {n_correct}/{len(graded)} = {n_correct / max(1, len(graded)):.2%} ({args.dataset}, {args.mode})", file=report)
    for status, count in sorted(Counter(row["status"] for row in graded).items()):
        print(f"  {status}: {count}", file=report)
    if args.out:
        print(f"graded rows -> {args.out}", file=report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
