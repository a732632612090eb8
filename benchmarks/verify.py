"""Verdicts per second of the verifier pool, on real reference solutions.

GSM8K-style: every GSM8K train reference solution graded against its gold number. MATH-style:
MATH train reference solutions (last ``\\boxed{}`` through math-verify). Both go through
``check_all``, the path the pipeline and ``python -m wcse.verify`` use: worker processes,
chunks, a time limit per item. The pool's start-up is included; each figure is the fastest of
``--repeats`` runs, because other jobs on the same cores only ever add time.
Targets on 2 cores: >= 2,000/s GSM8K-style, >= 200/s MATH-style.

    python benchmarks/verify.py [--data-dir ../shared/data] [--workers 2] [--math-rows 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wcse.data.sources import load_split
from wcse.records import Problem
from wcse.verify.pool import default_workers
from wcse.verify.verifier import check_all

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def rate(fmt: str, problems: list[Problem], mode: str, workers: int, repeats: int) -> tuple[float, int]:
    """(fastest verdicts/s, correct count of that run) over ``repeats`` runs."""
    items = [(p, p.solution) for p in problems]
    best, correct = 0.0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        checks = check_all(fmt, items, mode, workers=workers, desc=f"{fmt} {mode}")
        best = max(best, len(items) / (time.perf_counter() - start))
        correct = sum(c.correct for c in checks)
    return best, correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--math-rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    suites = {
        "gsm8k": load_split("gsm8k", "train", path=str(args.data_dir / "gsm8k/train.jsonl")),
        "math": [p for p in load_split("math", "train", path=str(args.data_dir / "math/train.jsonl")) if p.answer][
            : args.math_rows
        ],
    }
    print(f"{'format':8} {'mode':8} {'items':>6} {'verdicts/s':>11} {'correct':>8}  (workers={args.workers})")
    for fmt, problems in suites.items():
        for mode in ("strict", "lenient"):
            per_second, correct = rate(fmt, problems, mode, args.workers, args.repeats)
            print(f"{fmt:8} {mode:8} {len(problems):>6} {per_second:>11,.0f} {correct:>8}")


if __name__ == "__main__":
    main()
