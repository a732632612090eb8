"""The sweep report, built from a real Hydra multirun of the toy pipeline (no fabricated summaries).

The sweep (setup=kd,w2s x budget=low,high of experiment=toy_tiny) runs once per module; the
report's tables, figures and failed-job listing are checked against what its jobs wrote. The
same report on sweeps written in seconds (seeds, reruns, variants, summaries this wcse cannot
read) is tests/test_report_sweep.py; planned jobs against Hydra's own are tests/test_report_planned.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT
from wcse.report.sweep import collect
from wcse.report.tables import data_cells, finetune_cells
from wcse.summary import RunSummary

FIGURES = (
    "finetune_low.png",
    "finetune_high.png",
    "data_quality.png",
    "coverage_curves.png",
    "per_level_low.png",
    "per_level_high.png",
    "transfer_low.png",
    "transfer_high.png",
)


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real multirun: 4 jobs sharing one cache (the w2s jobs reuse the kd jobs' samples)."""
    root = tmp_path_factory.mktemp("report")
    _run(
        "-m",
        "wcse.main",
        "-m",
        "experiment=toy_tiny",
        "setup=kd,w2s",
        "budget=low,high",
        "trainer.deepspeed=null",  # the report reads summaries: plain Trainer runs start faster
        "trainer.checkpoints=2",
        "dataset@transfer=toy_arith_variants",
        "transfer.toy.n_test=10",
        f"hydra.sweep.dir={root / 'sweep'}",
        f"paths.cache_dir={root / 'cache'}",
        timeout=3000,  # 4 toy jobs: minutes on a quiet machine, half an hour on a loaded one
    )
    return root / "sweep"


def _jobs(sweep: Path) -> dict[tuple[str, str], Path]:
    """Job folder by (setup, budget), read from the summaries the jobs wrote."""
    jobs = {}
    for path in sweep.rglob("summary.json"):
        run = RunSummary.read(path).run
        jobs[(run.setup, run.budget)] = path.parent
    return jobs


def _summary(sweep: Path, setup: str, budget: str) -> RunSummary:
    return RunSummary.read(_jobs(sweep)[(setup, budget)] / "summary.json")


def _pct(value: float, interval: tuple[float, float]) -> str:
    return f"{100 * value:.1f}% [{100 * interval[0]:.1f}-{100 * interval[1]:.1f}]"


@pytest.fixture(scope="module")
def report(sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The CLI on a copy of the sweep with three broken jobs added: one died without a trace, one
    wrote invalid JSON, and a real job whose run raised (wcse.main records its traceback in FAILED)."""
    root = tmp_path_factory.mktemp("broken") / "sweep"
    shutil.copytree(sweep, root)
    job = _jobs(root)[("kd", "low")]
    for name in ("90-died", "91-garbled"):
        shutil.copytree(job, root / name)
    (root / "90-died" / "summary.json").unlink()
    (root / "91-garbled" / "summary.json").write_text(
        '{"version": 3, "sampling": {"budget": {"se_samples": 1,'
    )
    _run(
        "-m",
        "wcse.main",
        "-m",
        "experiment=toy_tiny",
        "stages=[dataset]",
        "setup.mix_wc_fraction=2",  # invalid: the run raises before any stage
        f"paths.cache_dir={sweep.parent / 'cache'}",
        f"hydra.sweep.dir={root / '92-invalid'}",
        timeout=300,
    )
    proc = _run("-m", "wcse.report", str(root), timeout=300)
    return root, root / "report", proc.stdout


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


@pytest.mark.slow
def test_cli_writes_every_figure_as_a_real_png(report) -> None:
    _, out, _ = report
    for name in FIGURES:
        with Image.open(out / name) as image:
            image.verify()  # a complete, uncorrupted PNG
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert image.width >= 800 and image.height >= 500, (name, image.size)
            assert round(image.info["dpi"][0]) == 150


@pytest.mark.slow
def test_report_md_holds_the_figures_and_the_runs_numbers(report, sweep) -> None:
    _, out, _ = report
    md = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in md
    summary = _summary(sweep, "w2s", "high")
    wc = summary.finetune.arms["wc"]
    row = next(
        line
        for line in _section(md, "Finetuned pass@1, high budget (Figure 1)").splitlines()
        if "SE-LM (w2s)" in line and "WC data" in line
    )
    assert _pct(wc.pass_at_1, wc.pass_at_1_interval) in row and "95% Wilson (1 run)" in row
    coverage = summary.data["wc"].coverage
    assert f"{100 * coverage:.1f}%" in _section(md, "Data quality (Figures 3-4)")
    runs = _section(md, "Runs included")
    for job in _jobs(sweep).values():
        assert f"`{job.relative_to(sweep)}`" in runs
    reading = _section(md, "Reading (computed from the numbers below)")
    assert reading.count("WC data beats SE data in") == 4 and "/2 setups" in reading
    assert reading.count("on the transfer set toy_arith_variants") == 2


@pytest.mark.slow
def test_transfer_and_per_level_sections_carry_the_runs_numbers_with_intervals(report, sweep) -> None:
    _, out, _ = report
    md = (out / "report.md").read_text()
    summary = _summary(sweep, "kd", "low")
    se = summary.finetune.arms["se"]
    transfer = se.transfer
    assert transfer.name == "toy_arith_variants" and transfer.n_problems == 20
    section = _section(md, "Finetuned pass@1 on the transfer set (toy_arith_variants), low budget")
    row = next(line for line in section.splitlines() if "Student-LM (kd)" in line and "SE data" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    base = summary.models[summary.finetune.target].base.transfer
    assert cells[5:] == [
        _pct(transfer.pass_at_1, transfer.pass_at_1_interval),
        "95% Wilson (1 run)",
        _pct(base.pass_at_1, base.pass_at_1_interval),
        _pct(se.pass_at_1, se.pass_at_1_interval),
        f"{100 * (se.pass_at_1 - transfer.pass_at_1):+.1f} pts",
    ]
    level = se.per_level["1"]
    row = next(
        line
        for line in _section(md, "Finetuned pass@1 per difficulty level, low budget").splitlines()
        if "| kd |" in line and "SE data" in line
    )
    assert _pct(level.value, (level.low, level.high)) in row


@pytest.mark.slow
def test_broken_jobs_are_listed_not_fatal(report) -> None:
    _, out, stdout = report
    failed = _section((out / "report.md").read_text(), "Failed or missing jobs")
    assert "`90-died`: no summary.json: the job died" in failed
    assert "wcse.runner" in failed  # the tail of the dead job's main.log
    assert "`91-garbled`: " in failed and "91-garbled/summary.json: unreadable summary" in failed
    raised = next(line for line in failed.splitlines() if line.startswith("- `92-invalid/"))
    assert raised.endswith(": failed: wcse.errors.ConfigError: setup.mix_wc_fraction=2: must be >= 0 and <= 1")
    assert "in validate" in failed  # its traceback
    for name in ("90-died", "91-garbled", "92-invalid/"):
        assert name in stdout
    assert "4 runs included" in (out / "report.md").read_text()


@pytest.mark.slow
def test_jobs_the_sweep_planned_but_never_started_are_listed(sweep, tmp_path) -> None:
    shutil.copytree(sweep, tmp_path / "sweep")
    shutil.rmtree(_jobs(tmp_path / "sweep")[("w2s", "high")])
    failed = collect(tmp_path / "sweep").failed
    planned = (
        "experiment=toy_tiny setup=w2s budget=high trainer.deepspeed=null trainer.checkpoints=2 "
        f"dataset@transfer=toy_arith_variants transfer.toy.n_test=10 paths.cache_dir={sweep.parent / 'cache'}"
    )
    assert [(f.job, f.reason.split(":")[0]) for f in failed] == [("#3", f"no job folder for ({planned})")]


@pytest.mark.slow
def test_setups_share_one_data_measurement(sweep) -> None:
    runs = collect(sweep).used
    assert len(runs) == 4 and not collect(sweep).failed
    data = data_cells(runs)
    assert {(k.budget, k.role) for k in data} == {(b, r) for b in ("low", "high") for r in ("wc", "se")}
    summary = _summary(sweep, "kd", "high")
    cell = next(c for k, c in data.items() if (k.budget, k.role) == ("high", "wc"))
    assert cell.measurements == 1  # kd and w2s sampled once: not two repeats
    assert cell.coverage.mean == summary.data["wc"].coverage
    assert cell.samples == summary.sampling.budget.wc_samples
    assert (cell.fpr.low, cell.fpr.high) == (summary.data["wc"].fpr.low, summary.data["wc"].fpr.high)
    cells = finetune_cells(runs)
    assert {(k.setup, k.budget, k.arm) for k in cells} == {
        (s, b, a) for s in ("kd", "w2s") for b in ("low", "high") for a in ("wc", "se")
    }
    assert all(c.pass1.n == 1 and c.pass1.method == "95% Wilson (1 run)" for c in cells.values())
