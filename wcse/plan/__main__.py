"""``python -m wcse.plan [-m] [--json FILE] OVERRIDES...``: the cost plan of a run or a multirun.

    python -m wcse.plan experiment=gemma2_math -m setup=kd,self_improve,w2s budget=low,high
    python -m wcse.plan experiment=gemini_math -m budget.scale=1.0,0.15 plan.hardware.gpu_hour_usd=2.5

Without the problems there is no plan: the dataset is loaded as a run loads it (local files
under paths.data_dir / WCSE_DATA_DIR, the toy generator, or the HF hub); a cell whose data or
settings fail is shown with its error and the others are still planned (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from wcse.config import register
from wcse.plan import assumptions
from wcse.plan.cost import CONF, Cell, CellPlanner, totals
from wcse.plan.table import render
from wcse.report.planned import sweep_jobs


def config_sources() -> list[dict[str, str]]:
    """The search path as ``hydra.runtime.config_sources`` lists it (what sweep_jobs reads)."""
    loader = GlobalHydra.instance().config_loader()
    return [{"path": s.path, "schema": s.scheme(), "provider": s.provider} for s in loader.get_sources()]


def jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Each cell's overrides, as Hydra's basic sweeper would plan them (conf's
    ``hydra.sweeper.params`` first)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        raise ValueError(f"{sweeps} sweep(s) several values: add -m (as python -m wcse.main -m does)")
    if not multirun:
        return [overrides]
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    params = compose(config_name="config", overrides=plain, return_hydra_config=True).hydra.sweeper.params or {}
    return sweep_jobs([*(f"{k}={v}" for k, v in params.items()), *overrides], config_sources())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wcse.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--multirun", action="store_true", help="plan every job of the sweep")
    parser.add_argument("--json", type=Path, help="also write the plan as JSON")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the run; plan.<key>=value for the plan")
    args = parser.parse_intermixed_args(argv)
    planning = [o for o in args.overrides if o.startswith(assumptions.PREFIX)]
    overrides = [o for o in args.overrides if not o.startswith(assumptions.PREFIX)]
    plan_cfg = assumptions.load(planning)

    register()
    if not GlobalHydra.instance().is_initialized():
        initialize_config_dir(config_dir=str(CONF), version_base="1.3")
    cells_overrides = jobs(overrides, args.multirun)
    varying = _varying(cells_overrides)
    unused = str(Path(tempfile.gettempdir()) / "wcse-plan-runs-nothing")
    planner = CellPlanner(plan_cfg)
    cells: list[Cell] = []
    for job in cells_overrides:
        label = ",".join(o for o in job if _key(o) in varying) or ",".join(job) or "(defaults)"
        cfg = compose(config_name="config", overrides=[*job, f"paths.run_dir={unused}"])
        cells.append(planner.plan(cfg, label, job))
    grid = totals(cells)
    print(render(cells, grid, plan_cfg))
    if args.json:
        args.json.write_text(json.dumps({"assumptions": asdict(plan_cfg), "cells": [asdict(c) for c in cells], "total": grid}, indent=2))
    return 1 if grid["failed_cells"] else 0


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def _varying(jobs_: list[list[str]]) -> set[str]:
    """The keys whose value differs between jobs: what names a cell (as Hydra names job dirs)."""
    values: dict[str, set[str]] = {}
    for job in jobs_:
        for override in job:
            values.setdefault(_key(override), set()).add(override)
    return {key for key, seen in values.items() if len(seen) > 1}


if __name__ == "__main__":
    sys.exit(main())
