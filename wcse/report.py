"""A readable account of a run's summary.json in the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Data quality per arm and finetuned pass@1 per arm, whichever parts the run produced."""
    console = console or Console()
    if "data" in summary:
        table = Table(title="Synthetic data (train split)")
        for col in ("arm", "samples/problem", "samples", "gen. tokens", "FLOPs", "coverage", "diversity", "FPR (95% CI)"):
            table.add_column(col, justify="right")
        for arm, m in summary["data"].items():
            cost = summary.get("sampling", {}).get(arm, {})
            fpr = m["fpr"]
            table.add_row(
                arm.upper(),
                str(m["k"]),
                str(m["n_samples"]),
                str(cost.get("generated_tokens", "-")),
                f"{cost['flops']:.3g}" if cost.get("flops") else "-",
                _pct(m["coverage"]),
                f"{m['diversity']:.2f}",
                f"{_pct(fpr['value'])} ({_pct(fpr['low'])}-{_pct(fpr['high'])})",
            )
        console.print(table)
    if "budget" in summary:
        b = summary["budget"]
        realised = summary.get("realised_flops_ratio_wc_over_se")
        dollars = summary.get("realised_dollar_ratio_wc_over_se")
        console.print(
            f"budget {b['mode']}-matched: {b['se_samples']} SE vs {b['wc_samples']} WC samples per problem "
            f"(nominal ratio {b['nominal_ratio']:.2f}); realised WC/SE cost: "
            + (f"{realised:.2f}x in FLOPs" if realised else "FLOPs unknown")
            + (f", {dollars:.2f}x in dollars" if dollars else "")
        )
    if "finetune" in summary:
        ft = summary["finetune"]
        table = Table(title=f"Finetuning {ft['target_model']} (setup {ft['setup']}); base pass@1 {_pct(ft['base_pass@1'])}")
        for col in ("data", "paradigm", "pass@1", "95% CI", "FPR of correct answers", "checkpoint (val. pass@1)"):
            table.add_column(col, justify="right")
        for arm, r in ft["arms"].items():
            lo, hi = r["pass@1_interval"]
            best = r["checkpoint_selection"]["best"]
            n = len(r["checkpoint_selection"]["checkpoints"])
            chosen = f"step {best['step']}" + (f", best of {n} ({_pct(best['validation_pass@1'])})" if n else " (final)")
            table.add_row(arm.upper(), r["paradigm"] or "-", _pct(r["pass@1"]), f"{_pct(lo)}-{_pct(hi)}", _pct(r["fpr"]["value"]), chosen)
        console.print(table)
    if "timing_seconds" in summary:
        console.print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timing_seconds"].items()))
