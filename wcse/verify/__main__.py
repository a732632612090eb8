"""Grade your own predictions with wcse's verifiers.

    python -m wcse.verify --dataset math --mode lenient preds.jsonl --out graded.jsonl

Each input row needs ``response`` (the model output) and ``answer`` (the gold final answer);
every other key is passed through. Each row is written back with ``correct``, ``extracted`` and
``status`` added (to ``--out``, else to stdout), and the accuracy and the count per status are
printed at the end. All rows are read and checked before any is graded, and the output is
written atomically, so a bad row costs nothing and a failed run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from wcse.records import Problem, json_lines
from wcse.verify import answers
from wcse.verify.pool import default_workers
from wcse.verify.verifier import check_all

DATASETS = ("math", "gsm8k", "toy_arith", "functional_math")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of ``path``; a bad one raises naming the file, the line and the key."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    rows = []
    for where, row in json_lines(path):
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
        for key in ("response", "answer"):
            if key not in row:
                raise ValueError(f"{where}: missing key {key!r}")
        if not isinstance(row["response"], str):
            raise ValueError(f"{where}: key 'response' must be a string")
        if not isinstance(row["answer"], str | int | float) or isinstance(row["answer"], bool):
            raise ValueError(f"{where}: key 'answer' must be a string or a number")
        rows.append(row)
    return rows


def grade(
    rows: list[dict[str, Any]], dataset: str, mode: str, workers: int | None, timeout_s: float | None
) -> list[dict[str, Any]]:
    """The rows with ``correct``, ``extracted`` and ``status``, in input order."""
    items = [(Problem(id=str(i), question="", answer=str(row["answer"])), row["response"]) for i, row in enumerate(rows)]
    checks = check_all(dataset, items, mode, workers=workers, timeout_s=timeout_s)
    return [
        {**row, "correct": c.correct, "extracted": c.extracted, "status": c.status}
        for row, c in zip(rows, checks, strict=True)
    ]


def _write_atomically(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wcse.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="JSONL rows with 'response' and 'answer'")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--mode", default="lenient", choices=answers.MODES, help="strict filters training data; lenient evaluates")
    parser.add_argument("--out", type=Path, help="where graded rows go (default: stdout)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="worker processes (default: the usable CPUs)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per row before it is graded 'timeout'")
    args = parser.parse_args(argv)
    try:
        rows = read_rows(args.input)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    graded = grade(rows, args.dataset, args.mode, args.workers, args.timeout)
    if args.out:
        _write_atomically(args.out, graded)
    else:
        sys.stdout.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in graded)
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
