"""The sweep's figures (matplotlib, PNG at 150 dpi): Figure 1's bars, data quality, coverage
curves at equal compute, pass@1 per difficulty level, and the transfer set's Figure 1.

Every number drawn comes from :mod:`wcse.report.tables`, so a figure and the table under it in
report.md cannot disagree. Figures are built on ``matplotlib.figure.Figure`` (no pyplot state),
so building them needs no display and leaks no figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from wcse.report.tables import (
    DataCell,
    DataKey,
    Tables,
    arm_rank,
    fmt_diff,
    natural,
    series_label,
    variant_label,
)
from wcse.stats import Estimate

COLORS = {"wc": "#e07b39", "se": "#3b6ea8", "mix": "#8c6bb1", "wc_one": "#f2b48a", "se_one": "#9dbbe0"}
DPI = 150


def _err(estimates: Sequence[Estimate], scale: float) -> list[list[float]]:
    """Matplotlib's asymmetric error bars, from estimates that have an interval."""
    return [[scale * (e.mean - e.low) for e in estimates], [scale * (e.high - e.mean) for e in estimates]]


def _top(e: Estimate, scale: float) -> float:
    return scale * max(e.mean, e.high if e.high is not None else e.mean)


def _panels(keys: Iterable[tuple[str, ...]]) -> list[tuple[str, str]]:
    return sorted({(k[0], k[1]) for k in keys})


def _pair_title(t: Tables, pair: str, dataset: str) -> str:
    names = t.models.get(pair, {})
    return f"{dataset}, model pair {pair} (WC = {names.get('wc', 'wc')}, SE = {names.get('se', 'se')})"


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    values: dict[tuple[str, str, str], Estimate],
    scale: float = 100.0,
    fmt: str = "{:.1f}",
) -> dict[str, float]:
    """One bar per (group, series) from ``values[(group, variant, arm)]``, with its interval and its
    value written above; returns the top of each group (bar or error bar), where notes can go."""
    series = sorted({key[1:] for key in values}, key=lambda s: (s[0], arm_rank(s[1])))
    width = 0.8 / max(1, len(series))
    tops: dict[str, float] = defaultdict(float)
    for i, (variant, arm) in enumerate(series):
        found = [(j, e) for j, g in enumerate(groups) if (e := values.get((g, variant, arm))) is not None]
        xs = [j + (i - (len(series) - 1) / 2) * width for j, _ in found]
        ests = [e for _, e in found]
        ax.bar(
            xs,
            [scale * e.mean for e in ests],
            width * 0.92,
            color=COLORS.get(arm),
            edgecolor="black",
            linewidth=0.5,
            label=series_label(variant, arm),
        )
        bounded = [(x, e) for x, e in zip(xs, ests, strict=True) if e.low is not None]
        if bounded:
            ax.errorbar(
                [x for x, _ in bounded],
                [scale * e.mean for _, e in bounded],
                yerr=_err([e for _, e in bounded], scale),
                fmt="none",
                ecolor="black",
                capsize=3,
            )
        for x, (j, e) in zip(xs, found, strict=True):
            ax.annotate(
                fmt.format(scale * e.mean),
                (x, _top(e, scale)),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
            tops[groups[j]] = max(tops[groups[j]], _top(e, scale))
    ax.set_xticks(range(len(groups)))
    return tops


def plot_finetune(t: Tables, budget: str, path: Path, on: str = "test") -> Path | None:
    """Figure 1: finetuned pass@1 per setup and data arm, the base model as a dashed line, and
    WC-SE written above each setup; on the test split, or (``on="transfer"``) on the transfer set
    of the same models. None when no run has the scores."""
    cells = {k: c for k, c in t.finetune.items() if k.budget == budget and c.score(on)}
    if not cells:
        return None
    panels = _panels(cells)
    n_setups = max(len({k.setup for k in cells if k[:2] == p}) for p in panels)
    fig = Figure(figsize=(max(6.5, 2.4 * n_setups + 2.5) * len(panels), 5.6), layout="constrained")
    title = f"Finetuned pass@1 by synthetic-data arm, {budget} sampling budget"
    if on == "transfer":
        title += "\non the transfer set: the models of the test-split figure, nothing retrained"
    fig.suptitle(title, fontsize=13)
    for ax, (pair, dataset) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        mine = {k: c for k, c in cells.items() if k[:2] == (pair, dataset)}
        setups = sorted({k.setup for k in mine}, key=t.setup_rank)
        tops = _grouped_bars(ax, setups, {(k.setup, k.variant, k.arm): c.score(on) for k, c in mine.items()})
        labelled = False
        for j, setup in enumerate(setups):
            base = next(
                (c.base_score(on) for k, c in mine.items() if k.setup == setup and c.base_score(on)), None
            )
            if base is not None:
                ax.hlines(
                    100 * base.mean,
                    j - 0.45,
                    j + 0.45,
                    colors="black",
                    linestyles="--",
                    linewidth=1.2,
                    label=None if labelled else "base model (before finetuning)",
                )
                ax.text(j - 0.44, 100 * base.mean, f"base {100 * base.mean:.1f}", va="bottom", fontsize=7)
                labelled = True
                tops[setup] = max(tops[setup], 100 * base.mean)
        ymax = max(tops.values(), default=1) * 1.3 + 8
        ax.set_ylim(0, ymax)
        notes: dict[str, list[str]] = defaultdict(list)
        for c in t.compare(on):
            if (c.model_pair, c.dataset, c.budget) == (pair, dataset, budget):
                pts, rel = fmt_diff(c)
                notes[c.setup].append(f"WC-SE: {pts}{variant_label(c.variant)}\nrelative: {rel}")
        for j, setup in enumerate(setups):
            if notes[setup]:
                ax.text(
                    j,
                    tops[setup] + 0.06 * ymax,
                    "\n".join(notes[setup]),
                    ha="center",
                    va="bottom",
                    fontsize=9,
                    fontweight="bold",
                    bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#999"},
                )
        targets = {k.setup: c.target_model for k, c in mine.items()}
        ax.set_xticklabels([f"{t.paper_name(s)} finetuning\n({s}: trains {targets[s]})" for s in setups])
        ax.set_ylabel(
            "pass@1 on the test split (%)"
            if on == "test"
            else f"pass@1 on {t.transfer_set(pair, dataset)} (%)"
        )
        ax.set_title(f"{_pair_title(t, pair, dataset)}\n{t.plan_note(pair, dataset, budget)}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles = {label: h for ax in fig.axes for h, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="outside lower center",
        ncol=len(handles),
        fontsize=9,
        title="error bars: " + "; ".join(sorted({c.score(on).method for c in cells.values()})),
        title_fontsize=8,
    )
    return _save(fig, path)


def plot_data_quality(t: Tables, path: Path) -> Path:
    """Figures 3-4: coverage, diversity and FPR of the WC and SE data at each budget."""
    panels = _panels(t.data)
    fig = Figure(figsize=(13, 4.6 * len(panels)), layout="constrained")
    fig.suptitle("Synthetic data quality: WC vs SE data at compute-matched budgets", fontsize=13)
    for sub, (pair, dataset) in zip(fig.subfigures(len(panels), 1, squeeze=False)[:, 0], panels, strict=True):
        mine = {k: c for k, c in t.data.items() if k[:2] == (pair, dataset)}
        budgets = [b for b in t.budgets if any(k.budget == b for k in mine)]
        rule = next(iter(mine.values())).rule
        metrics: list[tuple[str, Callable[[DataCell], Estimate | None], float]] = [
            ("coverage@k (%)", lambda c: c.coverage, 100.0),
            (f"diversity@k (unique correct solutions, {rule} rule)", lambda c: c.diversity, 1.0),
            ("false positive rate (%)", lambda c: c.fpr, 100.0),
        ]
        sub.suptitle(
            _pair_title(t, pair, dataset) + "; k = the role's samples per problem at the budget", fontsize=10
        )
        for ax, (title, metric, scale) in zip(sub.subplots(1, 3), metrics, strict=True):
            values = {
                (k.budget, k.variant, k.role): e for k, c in mine.items() if (e := metric(c)) is not None
            }
            tops = _grouped_bars(ax, budgets, values, scale, "{:.1f}" if scale == 100 else "{:.2f}")
            ax.set_ylim(0, max(tops.values(), default=1) * 1.2 or 1)
            ax.set_xticklabels(
                [
                    f"{b}\n(SE {p.se_samples} / WC {p.wc_samples})" if (p := t.plan(pair, dataset, b)) else b
                    for b in budgets
                ]
            )
            ax.set_title(title, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        methods = sorted(
            {
                e.method
                for c in mine.values()
                for e in (c.coverage, c.diversity, c.fpr)
                if e and e.low is not None
            }
        )
        sub.legend(
            *ax.get_legend_handles_labels(),
            loc="outside right upper",
            fontsize=8,
            title="error bars:\n" + ("\n".join(methods) or "none"),
            title_fontsize=8,
        )
    return _save(fig, path)


def _plain_ticks(axis: Any, ticks: Sequence[float]) -> None:
    """Ticks at the sample counts plotted, written as numbers (not 2^-1) on the log axis."""
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.2g}"))
    axis.set_minor_locator(NullLocator())


def plot_coverage_curves(t: Tables, path: Path) -> Path:
    """Figure 6 at equal cost: SE coverage@k at x = k and WC coverage@k at x = k / ratio."""
    panels = _panels(t.data)
    budgets = [b for b in t.budgets if any(k.budget == b for k in t.data)]
    fig = Figure(figsize=(5.2 * len(budgets), 4.4 * len(panels)), layout="constrained")
    fig.suptitle(
        "Coverage of the data vs sampling compute: WC at ratio x k samples costs the same as SE at k",
        fontsize=12,
    )
    axes = fig.subplots(len(panels), len(budgets), squeeze=False)
    for row, (pair, dataset) in zip(axes, panels, strict=True):
        for ax, budget in zip(row, budgets, strict=True):
            for variant in sorted({k.variant for k in t.data if k[:3] == (pair, dataset, budget)}):
                plan = t.plan(pair, dataset, budget, variant)
                cells = {
                    role: t.data.get(DataKey(pair, dataset, budget, variant, role)) for role in ("wc", "se")
                }
                if plan is None or None in cells.values():
                    continue
                ratio = plan.wc_samples / plan.se_samples
                for role, cost in (("se", 1.0), ("wc", 1 / ratio)):
                    c = cells[role]
                    ax.plot(
                        [k * cost for k in c.curve],
                        [100 * e.mean for e in c.curve.values()],
                        marker="o" if role == "se" else "s",
                        color=COLORS[role],
                        label=f"{role.upper()} ({c.model}) coverage@k{variant_label(variant)}",
                    )
                    ax.plot(
                        c.samples * cost,
                        100 * c.coverage.mean,
                        marker="*",
                        markersize=16,
                        color=COLORS[role],
                        markeredgecolor="black",
                    )
                ax.set_xscale("log", base=2)
                ax.axvline(plan.se_samples, color="grey", linestyle=":")
                ax.annotate(
                    f"budget: SE@{plan.se_samples} {100 * cells['se'].coverage.mean:.1f}%\n"
                    f"vs WC@{plan.wc_samples} {100 * cells['wc'].coverage.mean:.1f}%",
                    (plan.se_samples, 3),
                    xytext=(-6, 0),
                    textcoords="offset points",
                    ha="right",
                    fontsize=8,
                )
                top = ax.secondary_xaxis(
                    "top", functions=(lambda x, r=ratio: x * r, lambda x, r=ratio: x / r)
                )
                top.set_xlabel(f"WC samples per problem ({ratio:g} per SE sample)", fontsize=8)
                _plain_ticks(top.xaxis, list(cells["wc"].curve))
                _plain_ticks(ax.xaxis, [min(cells["wc"].curve) / ratio, *cells["se"].curve])
            ax.set_ylim(0, 105)
            ax.set_xlabel("SE-equivalent compute (SE samples per problem)")
            ax.set_ylabel("coverage@k (%)")
            ax.set_title(f"{dataset}, model pair {pair}\n{t.plan_note(pair, dataset, budget)}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def plot_per_level(t: Tables, budget: str, path: Path) -> Path | None:
    """Finetuned pass@1 per difficulty level and arm, one panel per setup, base model as bars' marker."""
    cells = {k: c for k, c in t.finetune.items() if k.budget == budget and c.per_level}
    if not cells:
        return None
    panels = sorted({k[:3] for k in cells}, key=lambda p: (p[0], p[1], t.setup_rank(p[2])))
    fig = Figure(figsize=(max(8.0, 5.5 * len(panels)), 4.8), layout="constrained")
    methods = sorted({e.method for c in cells.values() for e in c.per_level.values() if e.low is not None})
    fig.suptitle(
        f"Finetuned pass@1 per difficulty level, {budget} sampling budget (means over runs)"
        + (f"\nerror bars: {'; '.join(methods)}" if methods else "")
    )
    for ax, (pair, dataset, setup) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        mine = {k: c for k, c in cells.items() if k[:3] == (pair, dataset, setup)}
        levels = sorted({lv for c in mine.values() for lv in c.per_level}, key=natural)
        tops = _grouped_bars(
            ax, levels, {(lv, k.variant, k.arm): e for k, c in mine.items() for lv, e in c.per_level.items()}
        )
        base = next(iter(mine.values())).base_per_level
        xs = [j for j, lv in enumerate(levels) if lv in base]
        ax.scatter(
            xs,
            [100 * base[levels[j]].mean for j in xs],
            marker="_",
            s=600,
            color="black",
            linewidths=2,
            label="base model (before finetuning)",
            zorder=3,
        )
        ax.set_xticklabels([f"level {lv}" for lv in levels])
        ax.set_ylim(0, min(115, max([*tops.values(), *(100 * e.mean for e in base.values())]) * 1.3 + 5))
        ax.set_ylabel("pass@1 (%)")
        ax.set_title(
            f"{t.paper_name(setup)} finetuning ({setup}: trains "
            f"{next(iter(mine.values())).target_model})"
            f"\n{dataset}, model pair {pair}\n{t.plan_note(pair, dataset, budget)}",
            fontsize=9,
        )
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
