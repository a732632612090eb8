"""report.md: the reading computed from the numbers, each figure with the table of its numbers,
the runs included, and the jobs that failed or are missing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from wcse.report.arms import FilterCell, FilterKey, FrontierKey, FrontierPoint, LrChoice, LrKey, RoundsKey
from wcse.report.sweep import Sweep
from wcse.report.tables import (
    Comparison,
    DataCell,
    DataKey,
    Tables,
    arm_rank,
    fmt_diff,
    fmt_num,
    fmt_pct,
    natural,
    series_label,
    variant_label,
)
from wcse.stats import Estimate
from wcse.summary import Rate

INTERVALS_NOTE = (
    "Intervals: a single run shows its own 95% Wilson interval over test problems (pass@1) or over "
    "checked samples (FPR); two runs of a cell (seeds) their min-max range; three or more the 95% "
    "t-interval of the mean over runs. The interval kind is given next to every number."
)
DATA_NOTE = (
    "Coverage@k and diversity@k use k = the role's samples per problem at the budget (compute-matched); "
    "FPR is the share of correct-answer samples whose reasoning is wrong, with its 95% Wilson interval "
    "over the checked samples."
)
TRANSFER_NOTE = (
    "The models of the table above, each scored on the transfer set: the test problems with new "
    "numbers (Functional MATH for MATH; toy_arith_variants: each toy test problem with its stated "
    "numbers re-drawn, twice). A model that learned the method rather than the answers loses nothing "
    "there. Checkpoints were chosen on the original validation split. test - transfer is the "
    "generalisation gap (positive: worse on the transfer set)."
)
CURVES_NOTE = (
    "One WC sample costs 1/r of an SE sample, where r = budget.wc_samples / budget.se_samples is the "
    "number of WC samples the budget buys per SE sample. SE coverage@k is plotted at x = k and WC "
    "coverage@k at x = k/r, so at any x both curves have spent the same sampling compute (the top axis "
    "reads WC samples). The dotted line and the stars mark the sweep's budget, where WC at r*k samples "
    'meets SE at k: the paper\'s "pass@3k of the WC model vs pass@k of the SE model".'
)


def readings(t: Tables) -> list[str]:
    """Sentences computed from the tables: who wins where, by how much, and whether within noise."""
    lines = []
    groups: dict[tuple[str, str, str, str, str], list[Comparison]] = defaultdict(list)
    for on in ("test", "transfer"):
        for c in t.compare(on):
            groups[(c.model_pair, c.dataset, c.budget, c.variant, on)].append(c)
    for (pair, dataset, budget, variant, on), comps in groups.items():
        wins = sum(c.diff > 0 for c in comps)
        ties = sum(c.diff == 0 for c in comps)
        best, worst = max(comps, key=lambda c: c.diff), min(comps, key=lambda c: c.diff)
        where = "" if on == "test" else f", on the transfer set {t.transfer_set(pair, dataset)}"
        text = (
            f"{pair} / {dataset}{variant_label(variant)}, {t.plan_note(pair, dataset, budget, variant)}{where}: "
            f"WC data beats SE data in {wins}/{len(comps)} setups"
            + (f" ({ties} tied)" if ties else "")
            + f"; largest WC-SE difference {100 * best.diff:+.1f} points ({t.paper_name(best.setup)}, {best.setup})"
        )
        if len(comps) > 1:
            text += f", smallest {100 * worst.diff:+.1f} points ({t.paper_name(worst.setup)}, {worst.setup})"
        lines.append(
            text + f"; the WC and SE intervals overlap in {sum(c.overlap for c in comps)}/{len(comps)}."
        )
    data_groups: dict[tuple[str, str, str], list[tuple[DataCell, DataCell]]] = defaultdict(list)
    for key, wc in t.data.items():
        se = t.data.get(key._replace(role="se"))
        if key.role == "wc" and se is not None:
            data_groups[(key.model_pair, key.dataset, key.variant)].append((wc, se))
    for (pair, dataset, variant), pairs in data_groups.items():
        n = len(pairs)
        coverage = sum(wc.coverage.mean > se.coverage.mean for wc, se in pairs)
        diversity = sum(wc.diversity.mean > se.diversity.mean for wc, se in pairs)
        fprs = [(wc.fpr, se.fpr) for wc, se in pairs if wc.fpr and se.fpr]
        lines.append(
            f"{pair} / {dataset}{variant_label(variant)} data: WC has the higher coverage at {coverage}/{n} "
            f"budgets, the higher diversity at {diversity}/{n}, and the higher FPR at "
            f"{sum(w.mean > s.mean for w, s in fprs)}/{len(fprs)} (budgets with checked reasoning)."
        )
    return lines


def _md_table(headers: str, rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table; ``headers`` is written as in markdown ("a | b | c")."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    names = headers.split(" | ")
    return [
        "| " + " | ".join(names) + " |",
        "|" + "---|" * len(names),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
    ]


def _figure(title: str, figure: Path, *notes: str) -> list[str]:
    return [
        "",
        f"## {title}",
        "",
        f"![{title}]({figure.name})",
        "",
        *(line for n in notes for line in (n, "")),
    ]


def _md_finetune(t: Tables, budget: str, figure: Path, on: str = "test") -> list[str]:
    keys = sorted(
        (k for k, c in t.finetune.items() if k.budget == budget and c.score(on)),
        key=lambda k: (k[:2], t.setup_rank(k.setup), k.variant, arm_rank(k.arm)),
    )
    transfer = on == "transfer"
    rows = [
        [
            *k[:2],
            f"{t.paper_name(k.setup)} ({k.setup})",
            c.target_model,
            series_label(k.variant, k.arm),
        ]
        + [fmt_pct(c.score(on)), c.score(on).method, fmt_pct(c.base_score(on))]
        + ([fmt_pct(c.pass1), f"{100 * (c.pass1.mean - c.transfer.mean):+.1f} pts"] if transfer else [])
        for k in keys
        if (c := t.finetune[k])
    ]
    diffs = [
        [c.model_pair, c.dataset, c.setup + variant_label(c.variant), fmt_pct(c.wc), fmt_pct(c.se)]
        + [*fmt_diff(c), "yes" if c.overlap else "no"]
        for c in t.compare(on)
        if c.budget == budget
    ]
    if transfer:
        sets = sorted({t.finetune[k].transfer_set for k in keys})
        title = f"Finetuned pass@1 on the transfer set ({', '.join(sets)}), {budget} budget"
        headers = "pass@1 on the transfer set | interval | base pass@1 | test pass@1 | test - transfer"
        note = TRANSFER_NOTE
    else:
        title, headers, note = (
            f"Finetuned pass@1, {budget} budget (Figure 1)",
            "pass@1 | interval | base pass@1",
            None,
        )
    return [
        *_figure(title, figure, *([note] if note else [])),
        *_md_table(f"model pair | dataset | setup | finetuned model | data | {headers}", rows),
        "",
        *_md_table(
            "model pair | dataset | setup | WC data | SE data | WC-SE | (WC-SE)/SE | intervals overlap", diffs
        ),
    ]


def _data_in_order(t: Tables) -> list[tuple[DataKey, DataCell]]:
    return sorted(
        t.data.items(),
        key=lambda kc: (kc[0][:2], t.budgets.index(kc[0].budget), kc[0].variant, arm_rank(kc[0].role)),
    )


def _md_data(t: Tables, figure: Path) -> list[str]:
    rows = [
        [*k[:3], series_label(k.variant, k.role), c.model, c.samples, fmt_pct(c.coverage)]
        + [f"{fmt_num(c.diversity)} ({c.rule})", fmt_pct(c.fpr), c.checked, c.measurements]
        for k, c in _data_in_order(t)
    ]
    headers = "model pair | dataset | budget | data | model | samples/problem | coverage | diversity"
    return [
        *_figure("Data quality (Figures 3-4)", figure, DATA_NOTE),
        *_md_table(headers + " | FPR [95% Wilson] | checked samples | distinct measurements", rows),
    ]


def _md_curves(t: Tables, figure: Path) -> list[str]:
    rows = []
    for k, c in _data_in_order(t):
        plan = t.plan(*k[:4])
        cost = 1.0 if plan is None or k.role == "se" else plan.se_samples / plan.wc_samples
        rows += [
            [*k[:3], series_label(k.variant, k.role), kk, f"{kk * cost:.3g}", fmt_pct(e)]
            for kk, e in c.curve.items()
        ]
    headers = (
        "model pair | dataset | budget | data | k (samples/problem) | SE-equivalent compute | coverage@k"
    )
    return [
        *_figure("Coverage curves at equal compute (Figure 6)", figure, CURVES_NOTE),
        *_md_table(headers, rows),
    ]


def _md_per_level(t: Tables, budget: str, figure: Path) -> list[str]:
    keys = sorted(
        (k for k, c in t.finetune.items() if k.budget == budget and c.per_level),
        key=lambda k: (k[:2], t.setup_rank(k.setup), k.variant, arm_rank(k.arm)),
    )
    levels = sorted({lv for k in keys for lv in t.finetune[k].per_level}, key=natural)
    rows = [
        [
            *k[:3],
            series_label(k.variant, k.arm),
            *(fmt_pct(t.finetune[k].per_level.get(lv)) for lv in levels),
        ]
        for k in keys
    ]
    note = "Intervals as above, over the samples of each level (fewer than over the whole split, so wider)."
    return [
        *_figure(f"Finetuned pass@1 per difficulty level, {budget} budget", figure, note),
        *_md_table(
            " | ".join(["model pair | dataset | setup | data", *(f"level {lv}" for lv in levels)]), rows
        ),
    ]


FILTER_NOTE = (
    "What each filter kept of each model's samples, and the false-positive rate (right answer, wrong "
    "reasoning) before the filter (every correct-answer sample) and after it (the kept samples whose "
    "reasoning was checked), with 95% Wilson intervals (over seeds when the cell has several runs). "
    "The process filter keeps only samples whose every step is right; its FPR after is 0 by construction "
    "where every step is checked (the toy world)."
)
FRONTIER_NOTE = (
    "Finetuned pass@1 of the pure WC and SE data arms against the realised FLOPs of sampling their data "
    "(2P per prompt and generated token, from the token counts of every sample), one point per budget: "
    "the compute-optimal frontier. At equal x the two models spent the same sampling compute."
)


def _md_filters(filters: dict[FilterKey, FilterCell]) -> list[str]:
    if not any(k.method != "answer" for k in filters) and not any(c.fpr_after for c in filters.values()):
        return []
    rows = [
        [*k[:3], k.variant or "-", k.method, k.role.upper(), c.verified, c.correct, c.kept]
        + [fmt_pct(c.fpr_before), fmt_pct(c.fpr_after)]
        for k, c in sorted(filters.items())
    ]
    return [
        "",
        "## Filtering: kept data and its false-positive rate",
        "",
        FILTER_NOTE,
        "",
        *_md_table(
            "model pair | dataset | budget | variant | filter | data | samples | correct answer | kept | "
            "FPR before | FPR after (kept)",
            rows,
        ),
    ]


LABELS_NOTE = (
    "Human labels of correct solutions (`python -m wcse.label import --run`): the human FPR (wrong "
    "reasoning behind a right answer) with its 95% Wilson interval, the judge's FPR on the items both "
    "labelled, and their agreement (accuracy, Cohen's kappa)."
)


def _md_labels(sweep: Sweep) -> list[str]:
    def rate(r: Rate) -> str:
        return "-" if r.value is None else f"{100 * r.value:.1f}% [{100 * r.low:.1f}, {100 * r.high:.1f}]"

    rows = [
        [run.job, role.upper(), r.labelled, rate(r.human_fpr), ", ".join(r.judges) or "-", rate(r.judge_fpr), r.agreement.n,
         "-" if r.agreement.accuracy is None else f"{r.agreement.accuracy:.2f}", "-" if r.agreement.kappa is None else f"{r.agreement.kappa:.2f}"]
        for run in sweep.used if run.summary.labels is not None
        for role, r in run.summary.labels.roles.items()
    ]
    if not rows:
        return []
    return [
        "", "## Human-labelled false-positive rate", "", LABELS_NOTE, "",
        *_md_table("run | data | labelled | human FPR [95%] | judge | judge FPR [95%] | both labelled | accuracy | kappa", rows),
    ]


def _md_frontier(points: dict[FrontierKey, list[FrontierPoint]], figure: Path) -> list[str]:
    rows = [
        [key.model_pair, key.dataset, key.setup, f"{key.arm.upper()} data", p.budget, f"{p.flops:.3g}", fmt_pct(p.pass1)]
        for key, series in sorted(points.items())
        for p in series
    ]
    return [
        *_figure("Compute-optimal frontier: finetuned pass@1 against sampling FLOPs", figure, FRONTIER_NOTE),
        *_md_table("model pair | dataset | setup | data | budget | sampling FLOPs | pass@1", rows),
    ]


LR_NOTE = (
    "Each arm trained at every learning rate; its rate is chosen by the validation pass@1 of its best "
    "checkpoint, and its test pass@1 is read at that rate only, so each arm is compared at the rate "
    "that suits it. With `trainer.lr_grid` each run chooses (its rate and checkpoint together); across "
    "a sweep over `trainer.learning_rate` the rate of best mean validation over seeds is chosen."
)


def _md_lr(choices: dict[LrKey, LrChoice]) -> list[str]:
    rows = [
        [*k[:4], k.variant or "-", k.arm.upper()]
        + ["; ".join(f"{r:g}: {100 * c.validation[r].mean:.1f}%" for r in sorted(c.validation))]
        + ["; ".join(f"{r:g} ({n} of {sum(c.chosen.values())} runs)" for r, n in c.chosen.items()), fmt_pct(c.test)]
        for k, c in sorted(choices.items())
    ]
    return [
        "",
        "## Learning rate chosen on validation",
        "",
        LR_NOTE,
        "",
        *_md_table(
            "model pair | dataset | setup | budget | variant | data | validation pass@1 by rate | chosen rate | "
            "test pass@1 at it",
            rows,
        ),
    ]


ROUNDS_NOTE = (
    "Iterated rounds (`rounds=R`): each round samples with the models the previous round finetuned "
    "(WC self-improvement's and SE self-improvement's selected checkpoints), at the same per-round "
    "budget; every finetune starts from the base model. Round 0 is the target before finetuning."
)


def _md_rounds(series: dict[RoundsKey, list[tuple[int, Estimate]]], figure: Path) -> list[str]:
    rows = [
        [key.model_pair, key.dataset, key.budget, key.variant or "-", key.track.replace("_", " ")]
        + [fmt_pct(e) for _, e in points]
        for key, points in sorted(series.items())
    ]
    width = max(len(points) for points in series.values())
    return [
        *_figure("Rounds: test pass@1 by round", figure, ROUNDS_NOTE),
        *_md_table("model pair | dataset | budget | variant | track | " + " | ".join(f"round {r}" for r in range(width)), rows),
    ]


def _md_runs(sweep: Sweep) -> list[str]:
    rows = [
        [f"`{r.job}`", r.model_pair, r.dataset, r.setup, r.budget, r.seed or "-", r.variant or "-"]
        + [" ".join(f"`{o}`" for o in r.overrides) or "-"]
        + [f"superseded by `{r.duplicate_of}`" if r.duplicate_of else "used"]
        for r in sorted(sweep.runs, key=lambda r: r.job)
    ]
    lines = ["", "## Runs included", ""]
    lines += _md_table(
        "job | model pair | dataset | setup | budget | seed | variant | overrides | status", rows
    )
    lines += ["", "## Failed or missing jobs", ""] + ([] if sweep.failed else ["None."])
    for f in sweep.failed:
        first, *details = f.reason.splitlines() or [""]  # a summary's validation errors run to many lines
        lines.append(f"- `{f.job}`: {first}")
        for block in (details, f.log_tail):
            if block:
                lines += ["", "  ```text", *(f"  {line}" for line in block), "  ```"]
    return lines


def write_markdown(
    sweep: Sweep,
    t: Tables,
    figures: dict[str, Path],
    out: Path,
    filters: dict[FilterKey, FilterCell] | None = None,
    frontier: dict[FrontierKey, list[FrontierPoint]] | None = None,
    learning_rates: dict[LrKey, LrChoice] | None = None,
    rounds: dict[RoundsKey, list[tuple[int, Estimate]]] | None = None,
) -> Path:
    """report.md: the auto-generated reading, each figure with the table of its numbers, the runs."""
    superseded = len(sweep.runs) - len(sweep.used)
    md = [
        f"# Sweep report: `{sweep.root}`",
        "",
        f"{len(sweep.used)} runs included"
        + (f" ({superseded} superseded by reruns of the same cell and seed)" if superseded else "")
        + f", {len(sweep.failed)} failed or missing jobs. {INTERVALS_NOTE}",
        "",
        "## Reading (computed from the numbers below)",
        "",
        *(f"- {line}" for line in readings(t) or ["nothing to compare: no cell has both WC and SE results"]),
    ]
    for budget in t.budgets:
        if (figure := figures.get(f"finetune_{budget}")) is not None:
            md += _md_finetune(t, budget, figure)
    for budget in t.budgets:
        if (figure := figures.get(f"transfer_{budget}")) is not None:
            md += _md_finetune(t, budget, figure, on="transfer")
    if "data_quality" in figures:
        md += _md_data(t, figures["data_quality"])
        md += _md_curves(t, figures["coverage_curves"])
    for budget in t.budgets:
        if (figure := figures.get(f"per_level_{budget}")) is not None:
            md += _md_per_level(t, budget, figure)
    md += _md_filters(filters or {})
    md += _md_labels(sweep)
    if frontier and "frontier" in figures:
        md += _md_frontier(frontier, figures["frontier"])
    if learning_rates:
        md += _md_lr(learning_rates)
    if rounds and "rounds" in figures:
        md += _md_rounds(rounds, figures["rounds"])
    md += _md_runs(sweep)
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path
