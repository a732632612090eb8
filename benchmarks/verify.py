"""Verdicts per second of the verifier pool, on reference solutions and on real model outputs.

References: every GSM8K train reference solution graded against its gold number; MATH train
reference solutions (last ``\\boxed{}`` through math-verify). Model outputs: the verbatim outputs
of tests/data/real_outputs.jsonl and the formats of tests/data/real_outputs_formats.yaml (chat
CoT with boxes, Minerva lines, run-ons, prose), per kind, cycled to ``--output-rows`` (repeats
find their parses cached, as a sample store's repeated answers do); ``--outputs FILE`` grades a
JSONL of ``{kind, response, gold}`` rows instead. All go through ``check_all``, the path the
pipeline and ``python -m wcse.verify`` use: worker processes, chunks, a time limit per item. The
pool's start-up is included; each figure is the fastest of ``--repeats`` runs, because other
jobs on the same cores only ever add time.
Targets on 2 cores: >= 2,000/s GSM8K-style, >= 200/s MATH references, >= 500/s MATH outputs.

    python benchmarks/verify.py [--data-dir ../shared/data] [--workers 2] [--math-rows 2000]
        [--output-rows 1000] [--outputs FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import yaml

from wcse.data.sources import load_split
from wcse.records import Problem
from wcse.verify.pool import default_workers
from wcse.verify.verifier import check_all

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
CORPUS = ROOT / "tests" / "data"


def rate(
    fmt: str, items: list[tuple[Problem, str]], mode: str, workers: int, repeats: int
) -> tuple[float, int]:
    """(fastest verdicts/s, correct count of that run) over ``repeats`` runs."""
    best, correct = 0.0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        checks = check_all(fmt, items, mode, workers=workers, desc=f"{fmt} {mode}")
        best = max(best, len(items) / (time.perf_counter() - start))
        correct = sum(c.correct for c in checks)
    return best, correct


def model_outputs(path: Path | None) -> dict[str, list[tuple[Problem, str]]]:
    """(problem, response) pairs per kind: ``path``'s rows, else the committed real-output corpus."""
    if path is not None:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        lines = (
            (CORPUS / "real_outputs.jsonl").read_text(encoding="utf-8").splitlines()[1:]
        )  # line 1: sources
        rows = [json.loads(line) for line in lines]
        rows += yaml.safe_load((CORPUS / "real_outputs_formats.yaml").read_text(encoding="utf-8"))
    items: dict[str, list[tuple[Problem, str]]] = {}
    for n, row in enumerate(rows):
        problem = Problem(id=str(row.get("id", n)), question="", answer=row["gold"])
        items.setdefault(row["kind"], []).append((problem, row["response"]))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--math-rows", type=int, default=2000)
    parser.add_argument("--output-rows", type=int, default=1000, help="model outputs per kind (cycled)")
    parser.add_argument(
        "--outputs", type=Path, help="a JSONL of {kind, response, gold} rows to grade instead"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    references = {
        "gsm8k": load_split("gsm8k", "train", path=str(args.data_dir / "gsm8k/train.jsonl")),
        "math": [
            p for p in load_split("math", "train", path=str(args.data_dir / "math/train.jsonl")) if p.answer
        ][: args.math_rows],
    }
    suites = [
        (f"{fmt} references", fmt, [(p, p.solution) for p in problems])
        for fmt, problems in references.items()
    ]
    for fmt, items in model_outputs(args.outputs).items():
        rows = items if args.outputs else list(itertools.islice(itertools.cycle(items), args.output_rows))
        suites.append((f"{fmt} outputs ({len(items)} distinct)", fmt, rows))
    print(f"{'suite':30} {'mode':8} {'items':>6} {'verdicts/s':>11} {'correct':>8}  (workers={args.workers})")
    for name, fmt, items in suites:
        for mode in ("strict", "lenient"):
            per_second, correct = rate(fmt, items, mode, args.workers, args.repeats)
            print(f"{name:30} {mode:8} {len(items):>6} {per_second:>11,.0f} {correct:>8}")


if __name__ == "__main__":
    main()
