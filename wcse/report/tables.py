"""The sweep's numbers, aggregated over seeds: what the figures, report.md and the console show.

Each cell of the grid is a mean over its runs with an interval (:func:`wcse.stats.estimate`:
one run keeps its Wilson interval, two their range, three or more a t-interval), computed
once here so every product shows the same number.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from wcse.report.sweep import RunRecord
from wcse.roles import ROLES
from wcse.stats import Estimate, estimate
from wcse.summary import Budget, EvalResult, Rate, RunSummary, Scored
from wcse.train.arms import ARMS, LABELS


class Cell(NamedTuple):
    model_pair: str
    dataset: str
    setup: str
    budget: str
    variant: str
    arm: str


class DataKey(NamedTuple):
    model_pair: str
    dataset: str
    budget: str
    variant: str
    role: str


@dataclass
class FinetuneCell:
    target_model: str
    pass1: Estimate
    base: Estimate | None
    per_level: dict[str, Estimate]
    base_per_level: dict[str, Estimate]
    runs: list[str]
    transfer_set: str | None = None  # the dataset of the transfer evaluation, if the runs had one
    transfer: Estimate | None = None  # pass@1 on it
    base_transfer: Estimate | None = None

    def score(self, on: str) -> Estimate | None:
        """pass@1 on the test split (``on="test"``) or on the transfer set."""
        return self.pass1 if on == "test" else self.transfer

    def base_score(self, on: str) -> Estimate | None:
        return self.base if on == "test" else self.base_transfer


@dataclass
class DataCell:
    model: str
    samples: int  # per problem: the k of coverage@k and diversity@k
    coverage: Estimate
    diversity: Estimate
    rule: str  # the uniqueness rule of the headline diversity
    fpr: Estimate | None
    checked: int  # correct samples whose reasoning was checked (the FPR's denominator), over measurements
    curve: dict[int, Estimate]
    measurements: int


@dataclass(frozen=True)
class Comparison:
    """WC vs SE data in one setup: the numbers Figure 1 annotates."""

    model_pair: str
    dataset: str
    setup: str
    budget: str
    variant: str
    wc: Estimate
    se: Estimate

    @property
    def diff(self) -> float:
        return self.wc.mean - self.se.mean

    @property
    def relative(self) -> float | None:
        return self.diff / self.se.mean if self.se.mean else None

    @property
    def overlap(self) -> bool:
        """Whether the two intervals overlap: the difference is then within the noise they show."""
        if self.wc.low is None or self.wc.high is None or self.se.low is None or self.se.high is None:
            return False
        return self.wc.low <= self.se.high and self.se.low <= self.wc.high


def rank(name: str, known: Iterable[str]) -> tuple[int, str]:
    """Known names in their declared order, others after them by name."""
    known = list(known)
    return (known.index(name) if name in known else len(known), name)


def natural(key: str) -> tuple[bool, int, str]:
    """Difficulty levels in numeric order ("2" before "10"), named ones after."""
    return (not key.isdigit(), int(key) if key.isdigit() else 0, key)


@dataclass
class Tables:
    """Everything the figures, markdown and console show, computed once from the runs."""

    finetune: dict[Cell, FinetuneCell]
    data: dict[DataKey, DataCell]
    plans: dict[tuple[str, str, str, str], Budget]  # (pair, dataset, budget, variant) -> its sample counts
    models: dict[str, dict[str, str]]  # model pair -> role -> model name
    budgets: list[str]  # by number of SE samples per problem
    setup_labels: dict[str, str]  # setup -> the paper's name for the model it finetunes
    setup_targets: dict[str, str]  # setup -> the role it finetunes

    def setup_rank(self, setup: str) -> tuple[int, str]:
        """Setups in the paper's order (its Table 1): by the role they finetune, weakest first."""
        return rank(self.setup_targets.get(setup, ""), ROLES)[0], setup

    def paper_name(self, setup: str) -> str:
        """The paper's name for the model a setup finetunes (each summary's ``finetune.setup_label``)."""
        return self.setup_labels.get(setup, setup)

    def compare(self, on: str) -> list[Comparison]:
        """WC vs SE data per setup, on the test split (``on="test"``) or the transfer set."""
        return self._comparisons[on]

    @cached_property
    def _comparisons(self) -> dict[str, list[Comparison]]:
        out: dict[str, list[Comparison]] = {"test": [], "transfer": []}
        for on, found in out.items():
            for key, wc in self.finetune.items():
                se = self.finetune.get(key._replace(arm="se"))
                if (
                    key.arm == "wc"
                    and se is not None
                    and (wc_score := wc.score(on))
                    and (se_score := se.score(on))
                ):
                    found.append(Comparison(*key[:5], wc_score, se_score))
            found.sort(
                key=lambda c: (
                    c.model_pair,
                    c.dataset,
                    self.budgets.index(c.budget),
                    c.variant,
                    self.setup_rank(c.setup),
                )
            )
        return out

    def transfer_set(self, pair: str, dataset: str) -> str:
        return next(
            (c.transfer_set for k, c in self.finetune.items() if k[:2] == (pair, dataset) and c.transfer_set),
            "",
        )

    def plan(self, pair: str, dataset: str, budget: str, variant: str | None = None) -> Budget | None:
        """A budget's sample counts; without a variant, any variant's (they differ only where a
        variant overrides the budget itself)."""
        return next(
            (
                p
                for k, p in self.plans.items()
                if k[:3] == (pair, dataset, budget) and variant in (None, k[3])
            ),
            None,
        )

    def plan_note(self, pair: str, dataset: str, budget: str, variant: str | None = None) -> str:
        plan = self.plan(pair, dataset, budget, variant)
        if plan is None:
            return f"budget {budget}"
        return f"budget {budget}: {plan.se_samples} SE vs {plan.wc_samples} WC samples/problem ({plan.mode}-matched)"


def _per_key(rates: Sequence[Mapping[str, Rate]]) -> dict[str, Estimate]:
    """Per level (or subject) estimates over runs; one run keeps its Wilson interval."""
    out = {}
    for key in sorted({k for d in rates for k in d}, key=natural):
        first = rates[0].get(key)
        values = [d[key].value if key in d else None for d in rates]
        if (e := estimate(values, (first.low, first.high) if first else None)) is not None:
            out[key] = e
    return out


def _pass1(results: Sequence[EvalResult | None]) -> Estimate | None:
    """pass@1 over runs (None where a run has no such score); one run keeps its Wilson interval."""
    first = results[0]
    return estimate(
        [r.pass_at_1 if r else None for r in results], first.pass_at_1_interval if first else None
    )


def _base(summary: RunSummary, role: str) -> Scored | None:
    """The target model's scores before finetuning, when the run evaluated it."""
    model = (summary.models or {}).get(role)
    return model.base if model else None


def finetune_cells(runs: Sequence[RunRecord]) -> dict[Cell, FinetuneCell]:
    """Finetuned pass@1 per (model pair, dataset, setup, budget, variant, arm), averaged over seeds."""
    grouped: dict[Cell, list[RunRecord]] = defaultdict(list)
    for run in runs:
        for arm in run.summary.finetune.arms if run.summary.finetune else ():
            grouped[Cell(*run.cell, arm)].append(run)
    cells = {}
    for key, members in grouped.items():
        fts = [run.summary.finetune for run in members if run.summary.finetune]
        results = [ft.arms[key.arm] for ft in fts]
        bases = [_base(run.summary, ft.target) for run, ft in zip(members, fts, strict=True)]
        transfers = [r.transfer for r in results]
        first_base = bases[0]
        cells[key] = FinetuneCell(
            target_model=fts[0].target_model,
            pass1=estimate([r.pass_at_1 for r in results], results[0].pass_at_1_interval),
            base=estimate(
                [ft.base_pass_at_1 for ft in fts], first_base.pass_at_1_interval if first_base else None
            ),
            per_level=_per_key([r.per_level for r in results]),
            base_per_level=_per_key([b.per_level if b else {} for b in bases]),
            runs=[run.job for run in members],
            transfer_set=transfers[0].name if transfers[0] else None,
            transfer=_pass1(transfers),
            base_transfer=_pass1([b.transfer if b else None for b in bases]),
        )
    return cells


def data_cells(runs: Sequence[RunRecord]) -> dict[DataKey, DataCell]:
    """Coverage, diversity, FPR and coverage curve of each role's data per budget. The setups of a
    budget share one set of samples: identical measurements seen by several jobs count once."""
    grouped: dict[DataKey, dict[str, RunRecord]] = defaultdict(dict)
    for run in runs:
        for role, m in (run.summary.data or {}).items():
            content = m.model_dump_json(exclude={"per_problem_table", "steps_judged_table"})  # where the tables went differs per job
            grouped[DataKey(run.model_pair, run.dataset, run.budget, run.variant, role)][content] = run
    cells = {}
    for key, found in grouped.items():
        ms = [run.summary.data[key.role] for run in found.values() if run.summary.data]
        models = next(iter(found.values())).summary.models or {}
        ks = set.intersection(*(set(m.coverage_curve) for m in ms))
        cells[key] = DataCell(
            model=models[key.role].name if key.role in models else key.role.upper(),
            samples=ms[0].k,
            coverage=estimate([m.coverage for m in ms]),
            diversity=estimate([m.diversity for m in ms], proportion=False),
            rule=next(iter(ms[0].diversity_by_rule), "exact"),
            fpr=estimate([m.fpr.value for m in ms], (ms[0].fpr.low, ms[0].fpr.high)),
            checked=sum(m.fpr.n for m in ms),
            curve={int(k): estimate([m.coverage_curve[k] for m in ms]) for k in sorted(ks, key=int)},
            measurements=len(ms),
        )
    return cells


def tabulate(runs: Sequence[RunRecord]) -> Tables:
    plans: dict[tuple[str, str, str, str], Budget] = {}
    models: dict[str, dict[str, str]] = defaultdict(dict)
    labels: dict[str, str] = {}
    targets: dict[str, str] = {}
    for run in runs:
        summary = run.summary
        if summary.sampling is not None:
            plans[(run.model_pair, run.dataset, run.budget, run.variant)] = summary.sampling.budget
        for role, spec in (summary.models or {}).items():
            models[run.model_pair][role] = spec.name
        if summary.finetune is not None:
            labels.setdefault(run.setup, summary.finetune.setup_label)
            targets.setdefault(run.setup, summary.finetune.target)
    size: dict[str, int] = {}
    for (_, _, budget, _), plan in plans.items():
        size[budget] = min(size.get(budget, plan.se_samples), plan.se_samples)
    budgets = sorted({run.budget for run in runs}, key=lambda b: (size.get(b, 0), b))
    return Tables(finetune_cells(runs), data_cells(runs), plans, dict(models), budgets, labels, targets)


# ---------------------------------------------------------------- how cells are written


def fmt_pct(e: Estimate | None) -> str:
    if e is None:
        return "n/a"
    if e.low is None or e.high is None:
        return f"{100 * e.mean:.1f}%"
    return f"{100 * e.mean:.1f}% [{100 * e.low:.1f}-{100 * e.high:.1f}]"


def fmt_num(e: Estimate | None) -> str:
    if e is None:
        return "n/a"
    return f"{e.mean:.2f}" if e.low is None or e.high is None else f"{e.mean:.2f} [{e.low:.2f}-{e.high:.2f}]"


def fmt_diff(c: Comparison) -> tuple[str, str]:
    """WC-SE in points, and relative to SE, as Figure 1 annotates them."""
    points = round(100 * c.diff, 1) + 0.0  # + 0.0: a difference that rounds to zero prints +0.0, not -0.0
    return f"{points:+.1f} pts", "n/a (SE = 0)" if c.relative is None else f"{100 * c.relative:+.1f}%"


def variant_label(variant: str) -> str:
    return f" [{variant}]" if variant else ""


def series_label(variant: str, arm: str) -> str:
    """An arm's data (or a sampler's: the pure arms are named for them), with its variant."""
    return LABELS.get(arm, arm) + variant_label(variant)


def arm_rank(arm: str) -> tuple[int, str]:
    return rank(arm, ARMS)
