"""The sweep report, built from a real Hydra multirun of the toy pipeline (no fabricated summaries).

The sweep (setup=kd,w2s x budget=low,high of experiment=toy_tiny) runs once per module; tests
that need variants of its runs (seeds, reruns, other settings) copy a real job folder and change
one number or one override, so they follow the summary schema wherever the pipeline takes it.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import ROOT
from wcse.report import Cell, build_report, collect, data_cells, estimate, finetune_cells, fmt_pct, main

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
        timeout=1500,
    )
    return root / "sweep"


def _jobs(sweep: Path) -> dict[tuple[str, str], Path]:
    """Job folder by (setup, budget), read from the summaries the jobs wrote."""
    jobs = {}
    for path in sweep.rglob("summary.json"):
        run = json.loads(path.read_text())["run"]
        jobs[(run["setup"], run["budget"])] = path.parent
    return jobs


def _clone(job: Path, dest: Path, extra_overrides: tuple[str, ...] = (), pass1: float | None = None) -> Path:
    """A copy of a real job folder with more overrides and, optionally, another pass@1 for its WC
    arm; its summary is written now, as a job finishing now would."""
    shutil.copytree(job, dest)
    overrides = dest / ".hydra" / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(yaml.safe_load(overrides.read_text()) + list(extra_overrides)))
    summary = json.loads((dest / "summary.json").read_text())
    if pass1 is not None:
        summary["finetune"]["arms"]["wc"]["pass@1"] = pass1
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest


@pytest.fixture(scope="module")
def report(sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The CLI on a copy of the sweep with three broken jobs added: one died without a trace, one
    wrote invalid JSON, and a real job whose run raised (wcse.main records its traceback in FAILED)."""
    root = tmp_path_factory.mktemp("broken") / "sweep"
    shutil.copytree(sweep, root)
    job = _jobs(root)[("kd", "low")]
    (_clone(job, root / "90-died") / "summary.json").unlink()
    (_clone(job, root / "91-garbled") / "summary.json").write_text('{"budget": {"se_samples": 1,')
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
    summary = json.loads((_jobs(sweep)[("w2s", "high")] / "summary.json").read_text())
    wc = summary["finetune"]["arms"]["wc"]
    lo, hi = wc["pass@1_interval"]
    row = next(
        line
        for line in _section(md, "Finetuned pass@1, high budget").splitlines()
        if "(w2s)" in line and "WC data" in line
    )
    assert f"{100 * wc['pass@1']:.1f}% [{100 * lo:.1f}-{100 * hi:.1f}]" in row and "95% Wilson (1 run)" in row
    coverage = summary["data"]["wc"]["coverage"]
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
    summary = json.loads((_jobs(sweep)[("kd", "low")] / "summary.json").read_text())
    se = summary["finetune"]["arms"]["se"]
    transfer = se["transfer"]
    assert transfer["name"] == "toy_arith_variants" and transfer["n_problems"] == 20
    lo, hi = transfer["pass@1_interval"]
    section = _section(md, "Finetuned pass@1 on the transfer set (toy_arith_variants), low budget")
    row = next(line for line in section.splitlines() if "(kd)" in line and "SE data" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    base = summary["models"]["student"]["base"]["transfer"]
    assert cells[5:] == [
        f"{100 * transfer['pass@1']:.1f}% [{100 * lo:.1f}-{100 * hi:.1f}]",
        "95% Wilson (1 run)",
        f"{100 * base['pass@1']:.1f}% [{100 * base['pass@1_interval'][0]:.1f}-{100 * base['pass@1_interval'][1]:.1f}]",
        f"{100 * se['pass@1']:.1f}% [{100 * se['pass@1_interval'][0]:.1f}-{100 * se['pass@1_interval'][1]:.1f}]",
        f"{100 * (se['pass@1'] - transfer['pass@1']):+.1f} pts",
    ]
    level = se["per_level"]["1"]
    row = next(
        line
        for line in _section(md, "Finetuned pass@1 per difficulty level, low budget").splitlines()
        if "| kd |" in line and "SE data" in line
    )
    assert f"{100 * level['value']:.1f}% [{100 * level['low']:.1f}-{100 * level['high']:.1f}]" in row


@pytest.mark.slow
def test_broken_jobs_are_listed_not_fatal(report) -> None:
    _, out, stdout = report
    failed = _section((out / "report.md").read_text(), "Failed or missing jobs")
    assert "`90-died`: no summary.json: the job died" in failed
    assert "wcse.pipeline" in failed  # the tail of the dead job's main.log
    assert "`91-garbled`: malformed" in failed and "summary.json" in failed
    raised = next(line for line in failed.splitlines() if line.startswith("- `92-invalid/"))
    assert raised.endswith(": failed: ValueError: setup.mix_wc_fraction=2.0: must be in [0, 1]")
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
    summary = json.loads((_jobs(sweep)[("kd", "high")] / "summary.json").read_text())
    cell = next(c for k, c in data.items() if (k.budget, k.role) == ("high", "wc"))
    assert cell.measurements == 1  # kd and w2s sampled once: not two repeats
    assert (
        cell.coverage.mean == summary["data"]["wc"]["coverage"]
        and cell.samples == summary["budget"]["wc_samples"]
    )
    assert (cell.fpr.low, cell.fpr.high) == (
        summary["data"]["wc"]["fpr"]["low"],
        summary["data"]["wc"]["fpr"]["high"],
    )
    cells = finetune_cells(runs)
    assert {(k.setup, k.budget, k.arm) for k in cells} == {
        (s, b, a) for s in ("kd", "w2s") for b in ("low", "high") for a in ("wc", "se")
    }
    assert all(c.pass1.n == 1 and c.pass1.method == "95% Wilson (1 run)" for c in cells.values())


@pytest.mark.slow
def test_seeds_of_a_cell_are_averaged_with_an_interval_over_them(sweep, tmp_path) -> None:
    job = _jobs(sweep)[("w2s", "low")]
    for seed, value in ((1, 0.35), (2, 0.4), (3, 0.6)):
        _clone(job, tmp_path / f"{seed}-seed", (f"seed={seed}",), pass1=value)
    cell = finetune_cells(collect(tmp_path).used)[Cell("toy", "toy_arith", "w2s", "low", "", "wc")]
    mean = (0.35 + 0.4 + 0.6) / 3
    half = 4.303 * statistics.stdev([0.35, 0.4, 0.6]) / math.sqrt(3)
    assert cell.pass1.n == 3 and cell.pass1.method == "95% t over 3 runs"
    assert cell.pass1.mean == pytest.approx(mean)
    assert (cell.pass1.low, cell.pass1.high) == pytest.approx((max(0.0, mean - half), min(1.0, mean + half)))
    (tmp_path / "3-seed" / "summary.json").unlink()  # two seeds left: their range
    cell = finetune_cells(collect(tmp_path).used)[Cell("toy", "toy_arith", "w2s", "low", "", "wc")]
    assert (cell.pass1.mean, cell.pass1.low, cell.pass1.high) == pytest.approx((0.375, 0.35, 0.4))
    assert cell.pass1.method == "min-max of 2 runs"
    md = build_report(tmp_path, tmp_path / "out").read_text()
    assert f"{fmt_pct(cell.pass1)} | min-max of 2 runs" in md
    assert "`3-seed`: no summary.json" in md


@pytest.mark.slow
def test_reruns_and_other_settings_are_not_averaged_as_seeds(sweep, tmp_path) -> None:
    job = _jobs(sweep)[("kd", "high")]
    _clone(job, tmp_path / "0-first", pass1=0.9)
    _clone(job, tmp_path / "1-rerun")  # the same cell and seed, written later: it replaces the first
    _clone(job, tmp_path / "2-longer", ("trainer.max_steps=12",), pass1=0.5)
    sweep_ = collect(tmp_path)
    assert {r.job: r.duplicate_of for r in sweep_.runs}["0-first"] == "1-rerun"
    cells = finetune_cells(sweep_.used)
    original = json.loads((job / "summary.json").read_text())["finetune"]["arms"]["wc"]["pass@1"]
    assert cells[Cell("toy", "toy_arith", "kd", "high", "", "wc")].pass1.mean == original
    longer = cells[Cell("toy", "toy_arith", "kd", "high", "trainer.max_steps=12", "wc")]
    assert longer.pass1.mean == 0.5 and longer.pass1.n == 1


def test_estimate_says_how_its_interval_was_made() -> None:
    single = estimate([0.25], (0.1, 0.45))
    assert (single.mean, single.low, single.high, single.method) == (0.25, 0.1, 0.45, "95% Wilson (1 run)")
    assert estimate([0.25]).low is None  # nothing to build an interval from
    assert estimate([None, None]) is None
    pair = estimate([0.2, None, 0.4], (0.0, 1.0))  # a missing value drops out; the interval does not apply
    assert (pair.mean, pair.low, pair.high, pair.n) == pytest.approx((0.3, 0.2, 0.4, 2))
    near_zero = estimate([0.0, 0.01, 0.05])  # mean - t*se < 0: a rate's interval stops at 0
    assert near_zero.low == 0.0 and near_zero.high == pytest.approx(0.02 + 4.303 * statistics.stdev([0, 0.01, 0.05]) / math.sqrt(3))
    assert estimate([0.0, 0.01, 0.05], proportion=False).low < 0  # diversity is a count, not a rate
    many = estimate([0.4, 0.6] * 20)  # beyond the t table: 2.023 for 39 degrees of freedom
    assert many.method == "95% t over 40 runs"
    assert many.high - many.mean == pytest.approx(2.023 * math.sqrt(0.01 * 40 / 39) / math.sqrt(40), rel=1e-3)


def test_an_empty_sweep_is_an_error(tmp_path) -> None:
    (tmp_path / "0-died" / ".hydra").mkdir(parents=True)
    assert main([str(tmp_path)]) == 1
    assert not (tmp_path / "report").exists()
