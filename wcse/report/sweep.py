"""A sweep as its jobs left it on disk: the finished runs (typed summaries), the failed and the missing jobs.

A sweep is read from what its jobs wrote (each job's ``summary.json`` and Hydra's
``.hydra/overrides.yaml``), so a report can be rebuilt at any time without rerunning anything,
and a job that failed, left a summary this wcse cannot read, or never started is listed rather
than stopping the report. Runs that differ only in their seeds are repeats of one cell of the
grid (the tables average them); a rerun of a cell with the same seeds replaces the earlier run.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wcse.report.planned import planned_jobs, read_yaml
from wcse.rounds import ROUND_DIR
from wcse.summary import RunSummary

GRID_KEYS = ("model_pair", "dataset", "setup", "budget")  # the Hydra groups that name a cell of the grid
LOG_TAIL = 20


def override_name(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def is_seed(name: str) -> bool:
    return name == "seed" or name.endswith(".seed")


def _is_variant(name: str) -> bool:
    """Overrides that may change a cell's numbers without naming its cell: not the grid keys, not
    seeds (repeats of a cell) and not where files go."""
    return name not in GRID_KEYS and not is_seed(name) and name.split(".")[0] not in ("paths", "hydra")


@dataclass
class RunRecord:
    """One finished job: where it ran, how it was configured and what it measured."""

    job: str  # the job directory, relative to the sweep directory
    overrides: list[str]
    summary: RunSummary
    model_pair: str
    dataset: str
    setup: str
    budget: str
    seed: str  # its seed overrides ("seed=1"; "" for none): what tells repeats of one cell apart
    mtime: float
    variant: str = ""  # other overrides whose values differ across the sweep (they would be averaged away)
    round: int | None = None  # rounds > 1 (wcse.rounds): the round whose run this is (also in variant)
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


def _overrides(job: Path) -> list[str]:
    return [str(o) for o in read_yaml(job / ".hydra" / "overrides.yaml") or []]


def _read_run(path: Path, job: Path, name: str, overrides: list[str]) -> RunRecord:
    """Raises ValueError saying why a summary cannot be used."""
    summary = RunSummary.read(path)
    if summary.run is not None:  # written by the report stage
        names = {key: getattr(summary.run, key) for key in GRID_KEYS}
    else:  # the job's config names the same groups
        config: Any = read_yaml(job / ".hydra" / "config.yaml") or {}
        names = {key: (config.get(key) or {}).get("name") for key in GRID_KEYS}
        missing = [key for key, value in names.items() if not value]
        if missing:
            raise ValueError(
                f"{path}: no run section in it and no .hydra/config.yaml that names its {missing[0]}"
            )
    seed = ",".join(o for o in overrides if is_seed(override_name(o)))
    return RunRecord(name, overrides, summary, **names, seed=seed, mtime=path.stat().st_mtime, round=_round(path, job))


def _round(path: Path, job: Path) -> int | None:
    """The round of a rounds job's run (``<job>/round-<r>/<setup>/summary.json``), else None."""
    parts = [p.removeprefix(ROUND_DIR) for p in path.relative_to(job).parts if p.startswith(ROUND_DIR)]
    return next((int(p) for p in parts if p.isdigit()), None)


def _mark_variants(runs: Sequence[RunRecord]) -> None:
    parsed = [{override_name(o): o for o in run.overrides} for run in runs]
    names = {name for p in parsed for name in p if _is_variant(name)}
    varying = sorted(name for name in names if len({p.get(name) for p in parsed}) > 1)
    for run, p in zip(runs, parsed, strict=True):
        run.variant = ",".join([*(p[name] for name in varying if name in p), *([f"round={run.round}"] if run.round else [])])


def _mark_duplicates(runs: Sequence[RunRecord]) -> None:
    """A rerun of a cell with the same seeds (a relaunched job) replaces the earlier run rather than
    counting as a second repeat, which would shrink the interval over repeats for nothing."""
    latest: dict[tuple[str, ...], RunRecord] = {}
    for run in sorted(runs, key=lambda r: r.mtime):
        key = (*run.cell, run.seed)
        if key in latest:
            latest[key].duplicate_of = run.job
        latest[key] = run


def _missing(root: Path, started: set[frozenset[str]]) -> list[FailedJob]:
    """The jobs the multirun planned that have no folder."""
    try:
        planned = planned_jobs(root)
    except ValueError as err:
        return [FailedJob("multirun.yaml", f"cannot tell which jobs the sweep planned: {err}", [])]
    return [
        FailedJob(
            f"#{number}",
            f"no job folder for ({' '.join(overrides)}): not started yet, or never (a job that fails "
            "to compose leaves none, and Hydra stops a sweep at its first failing job)",
            [],
        )
        for number, overrides in enumerate(planned)
        if frozenset(overrides) not in started
    ]


def collect(sweep_dir: Path | str) -> Sweep:
    """Every summary.json under ``sweep_dir``; then every job that left none or one that cannot
    be read, each kind by job; then the planned jobs that never started."""
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
            runs.append(_read_run(path, job, _job_name(job, root), overrides))
        except ValueError as err:
            failed.append(FailedJob(_job_name(job, root), str(err), _log_tail(job)))
    jobs = {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    failed += [_unfinished(job, root) for job in sorted(jobs - finished)]
    for job in jobs - finished:
        with suppress(ValueError):  # unreadable overrides: the job is listed as unfinished above
            started.add(frozenset(_overrides(job)))
    failed += _missing(root, started)
    _mark_variants(runs)
    _mark_duplicates(runs)
    return Sweep(root, runs, failed)
