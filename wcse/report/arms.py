"""The research arms' parts of the sweep report: what each filter kept (and the FPR of what it
kept), the compute-optimal frontier (finetuned pass@1 against the realised sampling FLOPs of
the data it was trained on), the learning rate chosen on validation, and pass@1 by round.

Both read the same runs as :mod:`wcse.report.tables` and aggregate over seeds with
:func:`wcse.stats.estimate`, so their numbers agree with the finetune tables.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.figure import Figure

from wcse.report.figures import COLORS, _err, _save
from wcse.report.sweep import RunRecord
from wcse.roles import SAMPLERS
from wcse.rounds import TRACKS
from wcse.stats import Estimate, estimate
from wcse.summary import Rate


class FilterKey(NamedTuple):
    model_pair: str
    dataset: str
    budget: str
    variant: str
    method: str
    role: str


@dataclass
class FilterCell:
    verified: int
    correct: int
    kept: int
    fpr_before: Estimate | None  # of every correct-answer sample (data.<role>.fpr)
    fpr_after: Estimate | None  # of the kept samples (filter.models.<role>.kept_false_positives)


def _distinct(rates: list[Rate]) -> list[Rate]:
    """The seeds of a cell share one sample set: identical measurements count once (one keeps its
    Wilson interval rather than collapsing to a zero-width interval over copies)."""
    return list({(r.value, r.n): r for r in rates}.values())


def filter_cells(runs: Sequence[RunRecord]) -> dict[FilterKey, FilterCell]:
    """Per filter and role: the counts (identical over the seeds of a cell) and the FPR before
    and after filtering. The variant is read without the verifier override, so the filters of
    one sweep sit side by side."""
    grouped: dict[FilterKey, list[RunRecord]] = defaultdict(list)
    for run in runs:
        f = run.summary.filter
        for role in f.models if f else ():
            variant = ",".join(v for v in run.variant.split(",") if v and not v.startswith("verifier="))
            grouped[FilterKey(run.model_pair, run.dataset, run.budget, variant, f.method, role)].append(run)
    cells = {}
    for key, members in grouped.items():
        counts = [run.summary.filter.models[key.role] for run in members]
        before = _distinct([run.summary.data[key.role].fpr for run in members if run.summary.data and key.role in run.summary.data])
        after = _distinct([c.kept_false_positives for c in counts if c.kept_false_positives is not None])
        cells[key] = FilterCell(
            verified=counts[0].verified,
            correct=counts[0].correct,
            kept=counts[0].kept_for_training,
            fpr_before=estimate([r.value for r in before], (before[0].low, before[0].high)) if before else None,
            fpr_after=estimate([r.value for r in after], (after[0].low, after[0].high)) if after else None,
        )
    return cells


class FrontierKey(NamedTuple):
    model_pair: str
    dataset: str
    setup: str
    arm: str  # a sampler role's data: wc or se


@dataclass
class FrontierPoint:
    budget: str  # the cell's budget and variant, as the finetune table names it
    flops: float  # mean realised sampling FLOPs of the arm's data over the cell's runs
    pass1: Estimate


def frontier(runs: Sequence[RunRecord]) -> dict[FrontierKey, list[FrontierPoint]]:
    """Finetuned pass@1 of the pure WC and SE arms against what their samples cost, one point
    per budget (and variant) of the sweep; only series with two or more budgets are kept."""
    cells: dict[tuple[FrontierKey, str], list[RunRecord]] = defaultdict(list)
    for run in runs:
        ft, sampling = run.summary.finetune, run.summary.sampling
        if ft is None or sampling is None:
            continue
        for arm in ft.arms:
            if arm in SAMPLERS and sampling.models[arm].flops is not None:
                label = run.budget + (f" ({run.variant})" if run.variant else "")
                cells[(FrontierKey(run.model_pair, run.dataset, run.setup, arm), label)].append(run)
    series: dict[FrontierKey, list[FrontierPoint]] = defaultdict(list)
    for (key, label), members in cells.items():
        results = [run.summary.finetune.arms[key.arm] for run in members]
        flops = [run.summary.sampling.models[key.arm].flops for run in members]
        pass1 = estimate([r.pass_at_1 for r in results], results[0].pass_at_1_interval)
        series[key].append(FrontierPoint(label, sum(flops) / len(flops), pass1))
    return {k: sorted(v, key=lambda p: p.flops) for k, v in series.items() if len({p.flops for p in v}) > 1}


def plot_frontier(points: dict[FrontierKey, list[FrontierPoint]], path: Path) -> Path | None:
    """Finetuned pass@1 against realised sampling FLOPs (log x), a line per (setup, data arm)."""
    if not points:
        return None
    panels = sorted({(k.model_pair, k.dataset) for k in points})
    fig = Figure(figsize=(6.5 * len(panels), 4.5), layout="constrained")
    for ax, (pair, dataset) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for key, series in sorted(points.items()):
            if (key.model_pair, key.dataset) != (pair, dataset):
                continue
            xs = [p.flops for p in series]
            ys = [100 * p.pass1.mean for p in series]
            ax.errorbar(xs, ys, yerr=_err([p.pass1 for p in series], 100), marker="o", capsize=3, color=COLORS.get(key.arm),
                        linestyle="-" if key.arm == "wc" else "--", label=f"{key.setup}: {key.arm.upper()} data")
        ax.set_xscale("log")
        ax.set_xlabel("realised sampling FLOPs of the training data")
        ax.set_ylabel("finetuned pass@1 (%)")
        ax.set_title(f"{dataset}, model pair {pair}")
        ax.legend(fontsize=8)
    return _save(fig, path)


LR_KEY = "trainer.learning_rate="


class LrKey(NamedTuple):
    model_pair: str
    dataset: str
    setup: str
    budget: str
    variant: str  # the other varying overrides
    arm: str


@dataclass
class LrChoice:
    validation: dict[float, Estimate]  # learning rate -> validation pass@1 of its best checkpoint, over seeds
    chosen: dict[float, int]  # learning rate -> runs whose test pass@1 is read at it
    test: Estimate  # test pass@1 at the chosen rate(s)


def _rate_scores(run: RunRecord, arm: str) -> tuple[dict[float, float], float] | None:
    """One run's arm: the validation pass@1 of its best checkpoint at each learning rate, and
    the rate it was tested at. An in-run grid (``trainer.lr_grid``) scored several rates; a
    sweep's job (``trainer.learning_rate=...``) scored one."""
    selection = run.summary.finetune.arms[arm].checkpoint_selection
    grid: dict[float, float] = {}
    for c in selection.checkpoints:
        if c.learning_rate is not None and c.validation_pass_at_1 is not None:
            grid[c.learning_rate] = max(grid.get(c.learning_rate, 0.0), c.validation_pass_at_1)
    if len(grid) > 1:
        return grid, selection.best.learning_rate
    rates = [float(v[len(LR_KEY) :]) for v in run.variant.split(",") if v.startswith(LR_KEY)]
    if rates and selection.best.validation_pass_at_1 is not None:
        return {rates[0]: selection.best.validation_pass_at_1}, rates[0]
    return None


def lr_choices(runs: Sequence[RunRecord]) -> dict[LrKey, LrChoice]:
    """Learning-rate robustness, chosen on validation (the best checkpoint's validation pass@1,
    as checkpoints are chosen) so neither arm is compared at a rate that suits only the other.
    With ``trainer.lr_grid`` each run chose its own rate; across a sweep over
    ``trainer.learning_rate`` the rate of best mean validation is chosen (ties: the smaller)."""
    grouped: dict[LrKey, list[tuple[dict[float, float], float, Any]]] = defaultdict(list)
    for run in runs:
        if run.summary.finetune is None:
            continue
        variant = ",".join(v for v in run.variant.split(",") if v and not v.startswith(LR_KEY))
        for arm, result in run.summary.finetune.arms.items():
            if (scores := _rate_scores(run, arm)) is not None:
                grouped[LrKey(run.model_pair, run.dataset, run.setup, run.budget, variant, arm)].append((*scores, result))
    out = {}
    for key, members in grouped.items():
        rates = sorted({rate for by_rate, _, _ in members for rate in by_rate})
        validation = {rate: estimate([by_rate[rate] for by_rate, _, _ in members if rate in by_rate]) for rate in rates}
        if not any(len(by_rate) > 1 for by_rate, _, _ in members):  # a sweep: one rate for every seed
            best = max(rates, key=lambda rate: validation[rate].mean)
            members = [m for m in members if m[1] == best]
        results = [result for _, _, result in members]
        chosen = dict(sorted(Counter(rate for _, rate, _ in members).items()))
        out[key] = LrChoice(validation, chosen, estimate([r.pass_at_1 for r in results], results[0].pass_at_1_interval))
    return out


class RoundsKey(NamedTuple):
    model_pair: str
    dataset: str
    budget: str
    variant: str  # the other varying overrides (not the round)
    track: str  # wcse.rounds.TRACKS


def round_series(runs: Sequence[RunRecord]) -> dict[RoundsKey, list[tuple[int, Estimate]]]:
    """Each track's test pass@1 by round over seeds (wcse.rounds); round 0 is the track's target
    before any finetuning (the base model, few-shot as in every base row)."""
    cells: dict[tuple[RoundsKey, int], list[RunRecord]] = defaultdict(list)
    for run in runs:
        if run.round is None or run.summary.finetune is None:
            continue
        variant = ",".join(v for v in run.variant.split(",") if v and not v.startswith("round="))
        for track, (setup, arm) in TRACKS.items():
            if run.setup == setup and arm in run.summary.finetune.arms:
                key = RoundsKey(run.model_pair, run.dataset, run.budget, variant, track)
                cells[(key, run.round)].append(run)
                if run.round == 1:
                    cells[(key, 0)].append(run)
    series: dict[RoundsKey, list[tuple[int, Estimate]]] = defaultdict(list)
    for (key, r), members in sorted(cells.items()):
        arm = TRACKS[key.track].arm
        if r == 0:
            point = estimate([run.summary.finetune.base_pass_at_1 for run in members])
        else:
            results = [run.summary.finetune.arms[arm] for run in members]
            point = estimate([x.pass_at_1 for x in results], results[0].pass_at_1_interval)
        if point is not None:
            series[key].append((r, point))
    return dict(series)


def plot_rounds(series: dict[RoundsKey, list[tuple[int, Estimate]]], path: Path) -> Path | None:
    """Test pass@1 by round, a line per track (round 0: before finetuning)."""
    if not series:
        return None
    panels = sorted({(k.model_pair, k.dataset, k.budget, k.variant) for k in series})
    fig = Figure(figsize=(6 * len(panels), 4.5), layout="constrained")
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for key, points in sorted(series.items()):
            if tuple(key[:4]) != panel:
                continue
            xs = [r for r, _ in points]
            ys = [100 * e.mean for _, e in points]
            ax.errorbar(xs, ys, yerr=_err([e for _, e in points], 100), marker="o", capsize=3,
                        color=COLORS.get(TRACKS[key.track].arm), linestyle="--" if key.track == "w2s" else "-",
                        label=key.track.replace("_", " "))
        ax.set_xticks(sorted({r for points in series.values() for r, _ in points}))
        ax.set_xlabel("round (0: before finetuning)")
        ax.set_ylabel("test pass@1 (%)")
        ax.set_title(", ".join(x for x in (panel[1], f"pair {panel[0]}", f"budget {panel[2]}", panel[3]) if x))
        ax.legend(fontsize=8)
    return _save(fig, path)
