"""Reports: one run's summary.json in the terminal, and a whole sweep as tables, figures and markdown.

    python -m wcse.report multirun/2025-01-01_12-00-00            # -> <sweep>/report/report.md
    python -m wcse.report multirun/2025-01-01_12-00-00 --out paper_figs

A sweep is read from what its jobs left on disk (each job's ``summary.json`` and Hydra's
``.hydra/overrides.yaml``), so a report can be rebuilt at any time without rerunning anything,
and a job that failed or left a broken summary is listed rather than stopping the report.
Runs that differ only in their seeds are repeats of one cell of the grid and are averaged.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Data quality per arm and finetuned pass@1 per arm, whichever parts the run produced."""
    console = console or Console()
    if "data" in summary:
        table = Table(title="Synthetic data (train split)")
        for col in (
            "arm",
            "samples/problem",
            "samples",
            "gen. tokens",
            "FLOPs",
            "coverage",
            "diversity",
            "FPR (95% CI)",
        ):
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
        table = Table(
            title=f"Finetuning {ft['target_model']} (setup {ft['setup']}); "
            f"base pass@1 {_pct(ft['base_pass@1'])}"
        )
        transfer = next((r["transfer"]["name"] for r in ft["arms"].values() if "transfer" in r), None)
        for col in (
            "data",
            "paradigm",
            "pass@1",
            "95% CI",
            *([f"pass@1 on {transfer}"] if transfer else []),
            "FPR of correct answers",
            "checkpoint (val. pass@1)",
        ):
            table.add_column(col, justify="right")
        for arm, r in ft["arms"].items():
            lo, hi = r["pass@1_interval"]
            best = r["checkpoint_selection"]["best"]
            n = len(r["checkpoint_selection"]["checkpoints"])
            chosen = f"step {best['step']}" + (
                f", best of {n} ({_pct(best['validation_pass@1'])})" if n else " (final)"
            )
            table.add_row(
                arm.upper(),
                r["paradigm"] or "-",
                _pct(r["pass@1"]),
                f"{_pct(lo)}-{_pct(hi)}",
                *([_pct(r.get("transfer", {}).get("pass@1"))] if transfer else []),
                _pct(r["fpr"]["value"]),
                chosen,
            )
        console.print(table)
    if "timing_seconds" in summary:
        console.print(
            "stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timing_seconds"].items())
        )


# ================================================================ sweep reports

SETUPS = {"kd": "Student-LM", "self_improve": "WC-LM", "w2s": "SE-LM"}  # the paper's names (its Table 1)
ARMS = {
    "wc": "WC data",
    "se": "SE data",
    "mix": "WC+SE mix",
    "wc_one": "WC, 1 per problem",
    "se_one": "SE, 1 per problem",
}
COLORS = {"wc": "#e07b39", "se": "#3b6ea8", "mix": "#8c6bb1", "wc_one": "#f2b48a", "se_one": "#9dbbe0"}
GRID_KEYS = ("model_pair", "dataset", "setup", "budget")  # the Hydra groups that name a cell of the grid
LOG_TAIL = 20
DPI = 150
# two-sided 95% Student t quantiles for 1..30 degrees of freedom
# fmt: off
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
# fmt: on


def _override_name(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def _is_seed(name: str) -> bool:
    return name == "seed" or name.endswith(".seed")


def _is_variant(name: str) -> bool:
    """Overrides that may change a cell's numbers without naming its cell: not the grid keys, not
    seeds (repeats of a cell) and not where files go."""
    return name not in GRID_KEYS and not _is_seed(name) and name.split(".")[0] not in ("paths", "hydra")


@dataclass
class RunRecord:
    """One finished job: where it ran, how it was configured and what it measured."""

    job: str  # the job directory, relative to the sweep directory
    overrides: list[str]
    summary: dict[str, Any]
    model_pair: str
    dataset: str
    setup: str
    budget: str
    seed: str  # its seed overrides ("seed=1"; "" for none): what tells repeats of one cell apart
    mtime: float
    variant: str = ""  # other overrides whose values differ across the sweep (they would be averaged away)
    duplicate_of: str | None = None  # a later run of the same cell and seed, which is the one used

    @property
    def cell(self) -> tuple[str, str, str, str, str]:
        return self.model_pair, self.dataset, self.setup, self.budget, self.variant


@dataclass
class FailedJob:
    job: str
    reason: str
    log_tail: list[str]


@dataclass
class Sweep:
    root: Path
    runs: list[RunRecord]
    failed: list[FailedJob]

    @property
    def used(self) -> list[RunRecord]:
        return [r for r in self.runs if r.duplicate_of is None]


def _job_dir(path: Path, root: Path) -> Path:
    """The Hydra job a file belongs to: its nearest ancestor with a ``.hydra`` folder. Job folders
    can be nested (an override value with a slash becomes subfolders of the sweep's subdir)."""
    for parent in path.parents:
        if (parent / ".hydra").is_dir():
            return parent
        if parent == root:
            break
    return path.parent


def _job_name(job: Path, root: Path) -> str:
    return str(job.relative_to(root)) if job != root else "."


def _tail(path: Path) -> list[str]:
    return [line[:300] for line in path.read_text(errors="replace").splitlines()[-LOG_TAIL:]]


def _log_tail(job: Path) -> list[str]:
    logs = sorted(job.glob("*.log"), key=lambda p: p.stat().st_mtime)
    return _tail(logs[-1]) if logs else []


def _unfinished(job: Path, root: Path) -> FailedJob:
    """A job without summary.json: one whose run raised left its traceback in ``FAILED``
    (wcse.main); otherwise it died harder (killed, out of memory) or is still running."""
    failed = job / "FAILED"
    if failed.is_file():
        traceback = _tail(failed)
        return FailedJob(
            _job_name(job, root), "failed: " + next(reversed(traceback), "(empty FAILED)"), traceback
        )
    return FailedJob(
        _job_name(job, root), "no summary.json: the job died or is still running", _log_tail(job)
    )


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"malformed {path.name}: {err}") from err


def _overrides(job: Path) -> list[str]:
    return [str(o) for o in _read_yaml(job / ".hydra" / "overrides.yaml") or []]


def _planned_jobs(root: Path) -> list[list[str]]:
    """The overrides of every job a basic-sweeper multirun planned, in job-number order, read back
    from its multirun.yaml the way the sweeper expands them (Hydra has no public API for that)."""
    config = _read_yaml(root / "multirun.yaml")
    if config is None:
        return []
    try:
        sweeper = config["hydra"]["sweeper"]
        if not str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
            return []
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        overrides = OverridesParser.create().parse_overrides([*params, *config["hydra"]["overrides"]["task"]])
    except (KeyError, TypeError, AttributeError, OverrideParseException) as err:
        raise ValueError(f"malformed multirun.yaml: {type(err).__name__} {err}") from err
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def _read_run(path: Path, job: Path, name: str, overrides: list[str]) -> RunRecord:
    """Raises ValueError saying why a summary cannot be used."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"malformed {path}: {err}") from err
    if not isinstance(summary, dict):
        raise ValueError(f"malformed {path}: a JSON {type(summary).__name__}, not an object")
    config = _read_yaml(job / ".hydra" / "config.yaml") or {}
    run = summary.get("run") or {}  # written by the report stage; the config names the same groups otherwise
    names = {key: run.get(key) or (config.get(key) or {}).get("name") for key in GRID_KEYS}
    missing = [key for key, value in names.items() if not value]
    if missing:
        raise ValueError(f"{path}: no run.{missing[0]} in it and no .hydra/config.yaml that names it")
    seed = ",".join(o for o in overrides if _is_seed(_override_name(o)))
    return RunRecord(name, overrides, summary, **names, seed=seed, mtime=path.stat().st_mtime)


def _mark_variants(runs: Sequence[RunRecord]) -> None:
    parsed = [{_override_name(o): o for o in run.overrides} for run in runs]
    names = {name for p in parsed for name in p if _is_variant(name)}
    varying = sorted(name for name in names if len({p.get(name) for p in parsed}) > 1)
    for run, p in zip(runs, parsed, strict=True):
        run.variant = ",".join(p[name] for name in varying if name in p)


def _mark_duplicates(runs: Sequence[RunRecord]) -> None:
    """A rerun of a cell with the same seeds (a relaunched job) replaces the earlier run rather than
    counting as a second repeat, which would shrink the interval over repeats for nothing."""
    latest: dict[tuple[Any, ...], RunRecord] = {}
    for run in sorted(runs, key=lambda r: r.mtime):
        key = (*run.cell, run.seed)
        if key in latest:
            latest[key].duplicate_of = run.job
        latest[key] = run


def collect(sweep_dir: Path | str) -> Sweep:
    """Every summary.json under ``sweep_dir``, and every job that left none or a broken one (in
    that order, each kind by job)."""
    root = Path(sweep_dir)
    runs: list[RunRecord] = []
    failed: list[FailedJob] = []
    finished: set[Path] = set()
    started: set[frozenset[str]] = set()  # the override sets of the jobs that have a folder
    for path in sorted(root.rglob("summary.json")):
        job = _job_dir(path, root)
        finished.add(job)
        try:
            overrides = _overrides(job)
            started.add(frozenset(overrides))
            run = _read_run(path, job, _job_name(job, root), overrides)
        except ValueError as err:
            failed.append(FailedJob(_job_name(job, root), str(err), _log_tail(job)))
            continue
        try:  # valid JSON that lacks what the tables read is malformed too: find out here, not mid-report
            tabulate([run])
        except (KeyError, TypeError, AttributeError, IndexError) as err:
            failed.append(FailedJob(run.job, f"malformed {path}: {type(err).__name__} {err}", _log_tail(job)))
            continue
        runs.append(run)
    jobs = {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    failed += [_unfinished(job, root) for job in sorted(jobs - finished)]
    for job in jobs - finished:
        with suppress(ValueError):  # unreadable overrides: the job is listed as unfinished above
            started.add(frozenset(_overrides(job)))
    try:
        planned = _planned_jobs(root)
    except ValueError as err:
        planned = []
        failed.append(FailedJob("multirun.yaml", f"cannot tell which jobs the sweep planned: {err}", []))
    for number, overrides in enumerate(planned):
        if frozenset(overrides) not in started:
            reason = (
                f"no job folder for ({' '.join(overrides)}): not started yet, or never (a job that fails "
                "to compose leaves none, and Hydra stops a sweep at its first failing job)"
            )
            failed.append(FailedJob(f"#{number}", reason, []))
    _mark_variants(runs)
    _mark_duplicates(runs)
    return Sweep(root, runs, failed)


# ---------------------------------------------------------------- aggregation


def _t95(df: int) -> float:
    if df <= len(T95):
        return T95[df - 1]
    z = 1.959964  # beyond the table, the Cornish-Fisher expansion of t around the normal quantile
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Estimate:
    """A mean over runs with its interval, and how the interval was made (tables print it)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    method: str


def estimate(
    values: Sequence[float | None], interval: Sequence[float] | None = None, *, proportion: bool = True
) -> Estimate | None:
    """Mean over repeats with an interval. A single run keeps the interval it came with
    (``interval``: Wilson's over test problems, for pass@1 and FPR). Two runs give their range:
    a t-interval on one degree of freedom (+-12.7 sd) says nothing. Three or more give the 95%
    t-interval of the mean over runs, cut to [0, 1] for a ``proportion`` (no rate is below 0).
    None values (nothing measured) are left out."""
    xs = [x for x in values if x is not None]
    if not xs:
        return None
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        if len(values) == 1 and interval is not None:
            return Estimate(mean, interval[0], interval[1], 1, "95% Wilson (1 run)")
        return Estimate(mean, None, None, 1, "1 run, no interval")
    if len(xs) == 2:
        return Estimate(mean, min(xs), max(xs), 2, "min-max of 2 runs")
    half = _t95(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    low, high = (max(0.0, mean - half), min(1.0, mean + half)) if proportion else (mean - half, mean + half)
    return Estimate(mean, low, high, len(xs), f"95% t over {len(xs)} runs")


def _natural(key: str) -> tuple[bool, int, str]:
    """Difficulty levels in numeric order ("2" before "10"), named ones after."""
    return (not key.isdigit(), int(key) if key.isdigit() else 0, key)


def _rate(x: float | dict[str, Any] | None) -> tuple[float | None, tuple[float, float] | None]:
    """A value and its interval from a rate record ({"value", "low", "high", "n"}); summaries
    written before rates carried their counts hold bare values."""
    if isinstance(x, dict):
        return x["value"], (x["low"], x["high"])
    return x, None


def _per_key(dicts: Sequence[dict[str, Any]]) -> dict[str, Estimate]:
    """Per level (or subject) estimates over runs; one run keeps its Wilson interval."""
    keys = sorted({k for d in dicts for k in d}, key=_natural)
    out = {}
    for k in keys:
        rates = [_rate(d.get(k)) for d in dicts]
        if (e := estimate([v for v, _ in rates], rates[0][1])) is not None:
            out[k] = e
    return out


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
        if None in (self.wc.low, self.wc.high, self.se.low, self.se.high):
            return False
        return self.wc.low <= self.se.high and self.se.low <= self.wc.high


@dataclass
class Tables:
    """Everything the figures, markdown and console show, computed once from the runs."""

    finetune: dict[Cell, FinetuneCell]
    data: dict[DataKey, DataCell]
    plans: dict[tuple[str, str, str, str], dict[str, Any]]  # (pair, dataset, budget, variant) -> its "budget"
    models: dict[str, dict[str, str]]  # model pair -> role -> model name
    budgets: list[str]  # by number of SE samples per problem

    def compare(self, on: str) -> list[Comparison]:
        """WC vs SE data per setup, on the test split (``on="test"``) or the transfer set."""
        return self._comparisons[on]

    @cached_property
    def _comparisons(self) -> dict[str, list[Comparison]]:
        out: dict[str, list[Comparison]] = {"test": [], "transfer": []}
        for on, found in out.items():
            for key, wc in self.finetune.items():
                se = self.finetune.get(key._replace(arm="se"))
                if key.arm == "wc" and se is not None and wc.score(on) and se.score(on):
                    found.append(Comparison(*key[:5], wc.score(on), se.score(on)))
            found.sort(
                key=lambda c: (
                    c.model_pair,
                    c.dataset,
                    self.budgets.index(c.budget),
                    c.variant,
                    _rank(c.setup, SETUPS),
                )
            )
        return out

    def transfer_set(self, pair: str, dataset: str) -> str:
        return next((c.transfer_set for k, c in self.finetune.items() if k[:2] == (pair, dataset) and c.transfer_set), "")

    def plan(self, pair: str, dataset: str, budget: str, variant: str | None = None) -> dict[str, Any] | None:
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
        counts = f"{plan['se_samples']} SE vs {plan['wc_samples']} WC samples/problem"
        return f"budget {budget}: {counts} ({plan['mode']}-matched)"


def _rank(name: str, known: Iterable[str]) -> tuple[int, str]:
    known = list(known)
    return (known.index(name) if name in known else len(known), name)


def finetune_cells(runs: Sequence[RunRecord]) -> dict[Cell, FinetuneCell]:
    """Finetuned pass@1 per (model pair, dataset, setup, budget, variant, arm), averaged over seeds."""
    grouped: dict[Cell, list[RunRecord]] = defaultdict(list)
    for run in runs:
        for arm in run.summary.get("finetune", {}).get("arms", {}):
            grouped[Cell(*run.cell, arm)].append(run)
    cells = {}
    for key, members in grouped.items():
        fts = [run.summary["finetune"] for run in members]
        results = [ft["arms"][key.arm] for ft in fts]
        bases = [
            run.summary.get("models", {}).get(ft["target"], {}).get("base", {})
            for run, ft in zip(members, fts, strict=True)
        ]
        transfers = [r.get("transfer", {}) for r in results]
        base_transfers = [b.get("transfer", {}) for b in bases]
        cells[key] = FinetuneCell(
            target_model=fts[0]["target_model"],
            pass1=estimate([r["pass@1"] for r in results], results[0].get("pass@1_interval")),
            base=estimate([ft.get("base_pass@1") for ft in fts], bases[0].get("pass@1_interval")),
            per_level=_per_key([r.get("per_level", {}) for r in results]),
            base_per_level=_per_key([b.get("per_level", {}) for b in bases]),
            runs=[run.job for run in members],
            transfer_set=transfers[0].get("name"),
            transfer=estimate([x.get("pass@1") for x in transfers], transfers[0].get("pass@1_interval")),
            base_transfer=estimate(
                [x.get("pass@1") for x in base_transfers], base_transfers[0].get("pass@1_interval")
            ),
        )
    return cells


def data_cells(runs: Sequence[RunRecord]) -> dict[DataKey, DataCell]:
    """Coverage, diversity, FPR and coverage curve of each role's data per budget. The setups of a
    budget share one set of samples: identical measurements seen by several jobs count once."""
    grouped: dict[DataKey, dict[str, tuple[RunRecord, dict[str, Any]]]] = defaultdict(dict)
    for run in runs:
        for role, m in run.summary.get("data", {}).items():
            content = json.dumps({k: v for k, v in m.items() if k != "per_problem_table"}, sort_keys=True)
            grouped[DataKey(run.model_pair, run.dataset, run.budget, run.variant, role)][content] = (run, m)
    cells = {}
    for key, found in grouped.items():
        ms = [m for _, m in found.values()]
        run = next(iter(found.values()))[0]
        fprs = [m["fpr"] for m in ms]
        ks = set.intersection(*(set(m.get("coverage_curve", {})) for m in ms))
        cells[key] = DataCell(
            model=run.summary.get("models", {}).get(key.role, {}).get("name", key.role.upper()),
            samples=ms[0]["k"],
            coverage=estimate([m["coverage"] for m in ms]),
            diversity=estimate([m["diversity"] for m in ms], proportion=False),
            rule=next(iter(ms[0].get("diversity_by_rule", {})), "exact"),
            fpr=estimate([f["value"] for f in fprs], (fprs[0]["low"], fprs[0]["high"])),
            checked=sum(f["n"] for f in fprs),
            curve={int(k): estimate([m["coverage_curve"][k] for m in ms]) for k in sorted(ks, key=int)},
            measurements=len(ms),
        )
    return cells


def tabulate(runs: Sequence[RunRecord]) -> Tables:
    plans, models = {}, defaultdict(dict)
    for run in runs:
        if "budget" in run.summary:
            plans[(run.model_pair, run.dataset, run.budget, run.variant)] = run.summary["budget"]
        for role, spec in run.summary.get("models", {}).items():
            models[run.model_pair][role] = spec["name"]
    size: dict[str, int] = {}
    for (_, _, budget, _), plan in plans.items():
        size[budget] = min(size.get(budget, plan["se_samples"]), plan["se_samples"])
    budgets = sorted({run.budget for run in runs}, key=lambda b: (size.get(b, 0), b))
    return Tables(finetune_cells(runs), data_cells(runs), plans, dict(models), budgets)


# ---------------------------------------------------------------- text: numbers, readings


def fmt_pct(e: Estimate | None) -> str:
    if e is None:
        return "n/a"
    if e.low is None:
        return f"{100 * e.mean:.1f}%"
    return f"{100 * e.mean:.1f}% [{100 * e.low:.1f}-{100 * e.high:.1f}]"


def fmt_num(e: Estimate | None) -> str:
    if e is None:
        return "n/a"
    return f"{e.mean:.2f}" if e.low is None else f"{e.mean:.2f} [{e.low:.2f}-{e.high:.2f}]"


def fmt_diff(c: Comparison) -> tuple[str, str]:
    """WC-SE in points, and relative to SE, as Figure 1 annotates them."""
    points = round(100 * c.diff, 1) + 0.0  # + 0.0: a difference that rounds to zero prints +0.0, not -0.0
    return f"{points:+.1f} pts", "n/a (SE = 0)" if c.relative is None else f"{100 * c.relative:+.1f}%"


def _setup_label(setup: str) -> str:
    return f"{SETUPS.get(setup, setup)}, {setup}"


def _variant_label(variant: str) -> str:
    return f" [{variant}]" if variant else ""


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
            f"{pair} / {dataset}{_variant_label(variant)}, {t.plan_note(pair, dataset, budget, variant)}{where}: "
            f"WC data beats SE data in {wins}/{len(comps)} setups"
            + (f" ({ties} tied)" if ties else "")
            + f"; largest WC-SE difference {100 * best.diff:+.1f} points ({_setup_label(best.setup)})"
        )
        if len(comps) > 1:
            text += f", smallest {100 * worst.diff:+.1f} points ({_setup_label(worst.setup)})"
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
            f"{pair} / {dataset}{_variant_label(variant)} data: WC has the higher coverage at {coverage}/{n} "
            f"budgets, the higher diversity at {diversity}/{n}, and the higher FPR at "
            f"{sum(w.mean > s.mean for w, s in fprs)}/{len(fprs)} (budgets with checked reasoning)."
        )
    return lines


# ---------------------------------------------------------------- figures


def _series_label(variant: str, arm: str) -> str:
    return ARMS.get(arm, arm) + _variant_label(variant)


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
    series = sorted({key[1:] for key in values}, key=lambda s: (s[0], _rank(s[1], ARMS)))
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
            label=_series_label(variant, arm),
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
        setups = sorted({k.setup for k in mine}, key=lambda s: _rank(s, SETUPS))
        tops = _grouped_bars(ax, setups, {(k.setup, k.variant, k.arm): c.score(on) for k, c in mine.items()})
        labelled = False
        for j, setup in enumerate(setups):
            base = next((c.base_score(on) for k, c in mine.items() if k.setup == setup and c.base_score(on)), None)
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
                notes[c.setup].append(f"WC-SE: {pts}{_variant_label(c.variant)}\nrelative: {rel}")
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
        ax.set_xticklabels([f"{SETUPS.get(s, s)} finetuning\n({s}: trains {targets[s]})" for s in setups])
        ax.set_ylabel("pass@1 on the test split (%)" if on == "test" else f"pass@1 on {t.transfer_set(pair, dataset)} (%)")
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
                    f"{b}\n(SE {p['se_samples']} / WC {p['wc_samples']})"
                    if (p := t.plan(pair, dataset, b))
                    else b
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
                ratio = plan["wc_samples"] / plan["se_samples"]
                for role, cost in (("se", 1.0), ("wc", 1 / ratio)):
                    c = cells[role]
                    ax.plot(
                        [k * cost for k in c.curve],
                        [100 * e.mean for e in c.curve.values()],
                        marker="o" if role == "se" else "s",
                        color=COLORS[role],
                        label=f"{role.upper()} ({c.model}) coverage@k{_variant_label(variant)}",
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
                ax.axvline(plan["se_samples"], color="grey", linestyle=":")
                ax.annotate(
                    f"budget: SE@{plan['se_samples']} {100 * cells['se'].coverage.mean:.1f}%\n"
                    f"vs WC@{plan['wc_samples']} {100 * cells['wc'].coverage.mean:.1f}%",
                    (plan["se_samples"], 3),
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
    panels = sorted({k[:3] for k in cells}, key=lambda p: (p[0], p[1], _rank(p[2], SETUPS)))
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
        levels = sorted({lv for c in mine.values() for lv in c.per_level}, key=_natural)
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
            f"{SETUPS.get(setup, setup)} finetuning ({setup}: trains "
            f"{next(iter(mine.values())).target_model})"
            f"\n{dataset}, model pair {pair}\n{t.plan_note(pair, dataset, budget)}",
            fontsize=9,
        )
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------- markdown, console, CLI


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
        key=lambda k: (k[:2], _rank(k.setup, SETUPS), k.variant, _rank(k.arm, ARMS)),
    )
    transfer = on == "transfer"
    rows = [
        [
            *k[:2],
            f"{SETUPS.get(k.setup, k.setup)} ({k.setup})",
            c.target_model,
            _series_label(k.variant, k.arm),
        ]
        + [fmt_pct(c.score(on)), c.score(on).method, fmt_pct(c.base_score(on))]
        + ([fmt_pct(c.pass1), f"{100 * (c.pass1.mean - c.transfer.mean):+.1f} pts"] if transfer else [])
        for k in keys
        if (c := t.finetune[k])
    ]
    diffs = [
        [c.model_pair, c.dataset, c.setup + _variant_label(c.variant), fmt_pct(c.wc), fmt_pct(c.se)]
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
        title, headers, note = f"Finetuned pass@1, {budget} budget (Figure 1)", "pass@1 | interval | base pass@1", None
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
        key=lambda kc: (kc[0][:2], t.budgets.index(kc[0].budget), kc[0].variant, _rank(kc[0].role, ARMS)),
    )


def _md_data(t: Tables, figure: Path) -> list[str]:
    rows = [
        [*k[:3], _series_label(k.variant, k.role), c.model, c.samples, fmt_pct(c.coverage)]
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
        cost = 1.0 if plan is None or k.role == "se" else plan["se_samples"] / plan["wc_samples"]
        rows += [
            [*k[:3], _series_label(k.variant, k.role), kk, f"{kk * cost:.3g}", fmt_pct(e)]
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
        key=lambda k: (k[:2], _rank(k.setup, SETUPS), k.variant, _rank(k.arm, ARMS)),
    )
    levels = sorted({lv for k in keys for lv in t.finetune[k].per_level}, key=_natural)
    rows = [
        [
            *k[:3],
            _series_label(k.variant, k.arm),
            *(fmt_pct(t.finetune[k].per_level.get(lv)) for lv in levels),
        ]
        for k in keys
    ]
    note = (
        "Intervals as above, over the samples of each level (fewer than over the whole split, so wider)."
    )
    return [
        *_figure(f"Finetuned pass@1 per difficulty level, {budget} budget", figure, note),
        *_md_table(
            " | ".join(["model pair | dataset | setup | data", *(f"level {lv}" for lv in levels)]), rows
        ),
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
        lines.append(f"- `{f.job}`: {f.reason}")
        if f.log_tail:
            lines += ["", "  ```text", *(f"  {line}" for line in f.log_tail), "  ```"]
    return lines


def write_markdown(sweep: Sweep, t: Tables, figures: dict[str, Path], out: Path) -> Path:
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
    md += _md_runs(sweep)
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path


def _print_failed(sweep: Sweep, console: Console) -> None:
    for f in sweep.failed:
        console.print(
            f"[red]job[/red] {escape(f.job)}: {escape(f.reason)}", soft_wrap=True
        )  # paths stay whole


def print_grid(sweep: Sweep, t: Tables, console: Console) -> None:
    """The grid at a glance: setup x budget rows, one column per data arm."""
    arms = sorted({k.arm for k in t.finetune}, key=lambda a: _rank(a, ARMS))
    variants = any(k.variant for k in t.finetune)
    table = Table(title=escape(f"Finetuned pass@1 [interval] over the sweep {sweep.root}"))
    for col in (
        "model pair",
        "dataset",
        "setup",
        "budget",
        *(["variant"] if variants else []),
        *(ARMS.get(a, a) for a in arms),
        "base",
        "WC-SE",
        *(["WC-SE on transfer"] if t.compare("transfer") else []),
    ):
        table.add_column(col, justify="right")
    rows = sorted(
        {k[:5] for k in t.finetune},
        key=lambda r: (r[0], r[1], _rank(r[2], SETUPS), t.budgets.index(r[3]), r[4]),
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
    report = write_markdown(sweep, t, figures, out)
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
