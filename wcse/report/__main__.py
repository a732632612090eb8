"""Report a whole sweep: tables, figures, report.md and a grid in the terminal.

    python -m wcse.report multirun/2025-01-01_12-00-00            # -> <sweep>/report/report.md
    python -m wcse.report multirun/2025-01-01_12-00-00 --out paper_figs

The report is rebuilt from what the sweep's jobs left on disk (:mod:`wcse.report.sweep`), so it
can be run at any time, also while the sweep is running; jobs that failed or are missing are
listed, not fatal.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wcse.report.arms import filter_cells, frontier, lr_choices, plot_frontier, plot_rounds, round_series
from wcse.report.figures import plot_coverage_curves, plot_data_quality, plot_finetune, plot_per_level
from wcse.report.markdown import write_markdown
from wcse.report.sweep import Sweep, collect
from wcse.report.tables import Cell, Tables, arm_rank, fmt_diff, fmt_pct, tabulate
from wcse.train.arms import LABELS


def _print_failed(sweep: Sweep, console: Console) -> None:
    for f in sweep.failed:
        console.print(
            f"[red]job[/red] {escape(f.job)}: {escape(f.reason)}", soft_wrap=True
        )  # paths stay whole


def print_grid(sweep: Sweep, t: Tables, console: Console) -> None:
    """The grid at a glance: setup x budget rows, one column per data arm."""
    arms = sorted({k.arm for k in t.finetune}, key=arm_rank)
    variants = any(k.variant for k in t.finetune)
    table = Table(title=escape(f"Finetuned pass@1 [interval] over the sweep {sweep.root}"))
    for col in (
        "model pair",
        "dataset",
        "setup",
        "budget",
        *(["variant"] if variants else []),
        *(LABELS.get(a, a) for a in arms),
        "base",
        "WC-SE",
        *(["WC-SE on transfer"] if t.compare("transfer") else []),
    ):
        table.add_column(col, justify="right")
    rows = sorted(
        {k[:5] for k in t.finetune},
        key=lambda r: (r[0], r[1], t.setup_rank(r[2]), t.budgets.index(r[3]), r[4]),
    )
    diffs = {
        on: {(c.model_pair, c.dataset, c.setup, c.budget, c.variant): c for c in t.compare(on)}
        for on in ("test", "transfer")
    }
    for row in rows:
        cells = [t.finetune.get(Cell(*row, arm)) for arm in arms]
        base = next((c.base for c in cells if c and c.base), None)
        values = [
            *row[:4],
            *([row[4] or "-"] if variants else []),
            *(fmt_pct(c.pass1) if c else "-" for c in cells),
            fmt_pct(base),
            *(
                " ".join(fmt_diff(comp)) if (comp := diffs[on].get(row)) else "-"
                for on in ("test", "transfer")[: 2 if t.compare("transfer") else 1]
            ),
        ]
        table.add_row(*map(escape, values))  # "[2.5-12.9]" is text, not rich markup
    console.print(table)
    methods = sorted({c.pass1.method for c in t.finetune.values()})
    console.print("intervals: " + "; ".join(methods))
    _print_failed(sweep, console)


def build_report(
    sweep_dir: Path | str, out: Path | str | None = None, console: Console | None = None
) -> Path | None:
    """Figures, report.md and the console grid for a sweep; None when it holds no usable run."""
    console = console or Console()
    sweep = collect(sweep_dir)
    if not sweep.used:
        console.print(f"[red]no usable summary.json under {escape(str(sweep.root))}[/red]")
        _print_failed(sweep, console)
        return None
    out = Path(out) if out is not None else sweep.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    t = tabulate(sweep.used)
    figures: dict[str, Path] = {}
    for budget in t.budgets:
        for on, name in (("test", f"finetune_{budget}"), ("transfer", f"transfer_{budget}")):
            if (figure := plot_finetune(t, budget, out / f"{name}.png", on)) is not None:
                figures[name] = figure
        if (per_level := plot_per_level(t, budget, out / f"per_level_{budget}.png")) is not None:
            figures[f"per_level_{budget}"] = per_level
    if t.data:
        figures["data_quality"] = plot_data_quality(t, out / "data_quality.png")
        figures["coverage_curves"] = plot_coverage_curves(t, out / "coverage_curves.png")
    points = frontier(sweep.used)
    if (figure := plot_frontier(points, out / "frontier.png")) is not None:
        figures["frontier"] = figure
    by_round = round_series(sweep.used)
    if (figure := plot_rounds(by_round, out / "rounds.png")) is not None:
        figures["rounds"] = figure
    report = write_markdown(
        sweep, t, figures, out, filters=filter_cells(sweep.used), frontier=points, learning_rates=lr_choices(sweep.used),
        rounds=by_round,
    )
    print_grid(sweep, t, console)
    console.print(f"figures: {', '.join(p.name for p in figures.values())} in {out}")
    console.print(f"report: {report}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wcse.report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a Hydra multirun directory (or any folder holding summary.json files)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where figures and report.md go (default: SWEEP_DIR/report)"
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory")
    return 0 if build_report(args.sweep_dir, args.out) is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
