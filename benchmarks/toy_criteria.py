"""Issue 13's finetuning criteria (4-6), measured on a toy grid and its unfiltered twin.

    python benchmarks/toy_criteria.py <grid sweep dir> [<verifier=none sweep dir>]

Reads every ``summary.json`` under the folders (as ``python -m wcse.report`` does) and prints,
per setup and budget: each arm's finetuned test pass@1 over seeds with its 95% t-interval
(criterion 6: half-width within 1.5 points), its gain over the target's base few-shot pass@1
(criterion 4: at least 5 points, 10 for the Student), and, where the second folder holds the
same cells with ``verifier=none``, filtered minus unfiltered with the 95% t-interval of the
per-seed differences (criterion 5: excludes 0).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from pathlib import Path

from wcse.stats import t95
from wcse.summary import RunSummary

NEEDED_GAIN = {"student": 0.10}  # otherwise 0.05


def cells(root: Path) -> dict[tuple[str, str, str], dict[int, float]]:
    """(setup, budget, arm) -> {seed: finetuned test pass@1}, and the base under arm "base"."""
    out: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for path in sorted(root.rglob("summary.json")):
        s = RunSummary.read(path)
        if s.finetune is None or s.run is None:
            continue
        setup, budget, seed = s.finetune.setup, s.run.budget, s.run.seed
        out[(setup, budget, "base")][seed] = s.finetune.base_pass_at_1
        for arm, result in s.finetune.arms.items():
            out[(setup, budget, arm)][seed] = result.pass_at_1
    return out


def mean_half(xs: list[float]) -> tuple[float, float]:
    m = statistics.fmean(xs)
    return m, (t95(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("unfiltered", type=Path, nargs="?")
    args = parser.parse_args()
    grid = cells(args.grid)
    unfiltered = cells(args.unfiltered) if args.unfiltered else {}
    targets = {"kd": "student", "self_improve": "wc", "w2s": "se"}
    print("setup budget arm | seeds | pass@1 +- 95% t | base few-shot | gain (needed) | filtered - unfiltered [95% t]")
    for (setup, budget, arm), by_seed in sorted(grid.items()):
        if arm == "base":
            continue
        base = statistics.fmean(grid[(setup, budget, "base")].values())
        m, half = mean_half(list(by_seed.values()))
        needed = NEEDED_GAIN.get(targets.get(setup, ""), 0.05)
        line = (f"{setup} {budget} {arm} | {len(by_seed)} | {100 * m:.1f} +- {100 * half:.1f} | {100 * base:.1f} | "
                f"{100 * (m - base):+.1f} ({100 * needed:.0f}) |")
        raw = unfiltered.get((setup, budget, arm))
        if raw:
            diffs = [by_seed[s] - raw[s] for s in sorted(by_seed.keys() & raw.keys())]
            d, dh = mean_half(diffs)
            line += f" {100 * d:+.1f} [{100 * (d - dh):+.1f}, {100 * (d + dh):+.1f}] over {len(diffs)} seeds"
        print(line)


if __name__ == "__main__":
    main()
