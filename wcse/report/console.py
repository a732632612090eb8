"""One run's summary as tables in the terminal (printed at the end of ``python -m wcse.main``)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from wcse.summary import RunSummary


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def decontamination_line(summary: RunSummary) -> str | None:
    """What overlapped an evaluation split: train problems, exemplars, kept samples (None: not checked)."""
    d = summary.dataset.decontamination if summary.dataset is not None else None
    if d is None:
        return None
    rule = f"{d.ngram}-gram" + (f", coverage >= {d.min_coverage:g}" if d.min_coverage else "")
    if d.embedding is not None:
        rule += f"; {d.embedding.model} similarity >= {d.embedding.threshold:g}"
    kept = summary.filter.models if summary.filter is not None else {}
    samples = ", ".join(f"{role.upper()} {c.decontaminated}" for role, c in kept.items() if c.decontaminated is not None)
    line = (
        f"decontamination ({rule}, against {d.evaluation_items['dataset']} validation and test problems):"
        f" {d.train.flagged} of {d.train.checked} train problems {'dropped' if d.drop else 'flagged, kept'}"
        + (f" ({d.train.by_embedding} by similarity alone)," if d.train.by_embedding is not None else ",") +
        f" {d.exemplars.flagged} of {d.exemplars.checked} exemplars" + (f", kept samples {samples}" if samples else "")
    )
    if "transfer" in d.evaluation_items:
        transfer = ", ".join(f"{role.upper()} {c.decontaminated_transfer}" for role, c in kept.items() if c.decontaminated_transfer is not None)
        line += (
            f"; overlapping the transfer set ({d.evaluation_items['transfer']} problems, counted, not dropped):"
            f" {d.train.flagged_transfer} train problems, {d.exemplars.flagged_transfer} exemplars"
            + (f", kept samples {transfer}" if transfer else "")
        )
    return line + f" (listed in {d.dir})"


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    """Data quality per sampler and finetuned pass@1 per arm, whichever parts the run produced."""
    console = console or Console()
    sampling = summary.sampling
    if summary.data is not None:
        table = Table(title="Synthetic data (train split)")
        for col in ("arm", "samples/problem", "samples", "gen. tokens", "FLOPs", "coverage", "diversity", "FPR (95% CI)"):
            table.add_column(col, justify="right")
        for role, m in summary.data.items():
            cost = sampling.models.get(role) if sampling is not None else None
            table.add_row(
                role.upper(),
                str(m.k),
                str(m.n_samples),
                str(cost.generated_tokens) if cost else "-",
                f"{cost.flops:.3g}" if cost and cost.flops else "-",
                pct(m.coverage),
                f"{m.diversity:.2f}",
                f"{pct(m.fpr.value)} ({pct(m.fpr.low)}-{pct(m.fpr.high)})",
            )
        console.print(table)
    if sampling is not None:
        b, flops, dollars = sampling.budget, sampling.realised_flops_ratio_wc_over_se, sampling.realised_dollar_ratio_wc_over_se
        console.print(
            f"budget {b.mode}-matched: {b.se_samples} SE vs {b.wc_samples} WC samples per problem "
            f"(nominal ratio {b.nominal_ratio:.2f}); realised WC/SE cost: "
            + (f"{flops:.2f}x in FLOPs" if flops else "FLOPs unknown")
            + (f", {dollars:.2f}x in dollars" if dollars else "")
        )
    if (line := decontamination_line(summary)) is not None:
        console.print(line)
    ft = summary.finetune
    if ft is not None:
        zero = "" if ft.base_zero_shot_pass_at_1 is None else f" few-shot, {pct(ft.base_zero_shot_pass_at_1)} zero-shot"
        table = Table(title=f"Finetuning {ft.target_model} (setup {ft.setup}); base pass@1 {pct(ft.base_pass_at_1)}{zero}")
        transfer = next((r.transfer.name for r in ft.arms.values() if r.transfer is not None), None)
        columns = ["data", "paradigm", "pass@1", "95% CI", *([f"pass@1 on {transfer}"] if transfer else []),
                   "FPR of correct answers", "checkpoint (val. pass@1)"]
        for col in columns:
            table.add_column(col, justify="right")
        for arm, r in ft.arms.items():
            lo, hi = r.pass_at_1_interval
            best, n = r.checkpoint_selection.best, len(r.checkpoint_selection.checkpoints)
            chosen = f"step {best.step}" + (f", best of {n} ({pct(best.validation_pass_at_1)})" if n else " (final)")
            if len({c.learning_rate for c in r.checkpoint_selection.checkpoints}) > 1:  # trainer.lr_grid
                chosen += f", lr {best.learning_rate:g}"
            table.add_row(
                arm.upper(),
                r.paradigm or "-",
                pct(r.pass_at_1),
                f"{pct(lo)}-{pct(hi)}",
                *([pct(r.transfer.pass_at_1 if r.transfer else None)] if transfer else []),
                pct(r.fpr.value),
                chosen,
            )
        console.print(table)
    if summary.timing_seconds:
        console.print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.timing_seconds.items()))
