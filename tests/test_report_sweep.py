"""The sweep report on sweeps written here: typed version-2 summaries of toy-sized runs (the
shape ``python -m wcse.main`` writes, validated by :class:`wcse.summary.RunSummary`), so the
aggregation over seeds, reruns and variants, the failed jobs and the figures are checked in
seconds. tests/test_report.py checks the same report on a real multirun (slow)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import ROOT
from wcse.report.__main__ import main
from wcse.report.markdown import write_markdown
from wcse.report.sweep import collect
from wcse.report.tables import Cell, DataKey, fmt_pct, tabulate
from wcse.stats import wilson_interval
from wcse.summary import (
    ArmResult,
    Budget,
    CheckpointScore,
    DataMetrics,
    DataQuality,
    FilterCounts,
    FilterSection,
    FinetuneSection,
    ModelInfo,
    Rate,
    RunInfo,
    RunSummary,
    SamplingCost,
    SamplingSection,
    Scored,
    Selection,
    TransferResult,
)

LEVELS = {"1": 7, "2": 12, "3": 6, "4": 10, "5": 5}  # test problems per level (toy_arith: 40)
SUBJECTS = {"one_person": 27, "two_people": 13}
BUDGETS = {"low": 1, "high": 10}  # SE samples per problem; compute-matched WC: 3x as many
MODELS = {"student": ("toy-student", 660480.0), "wc": ("toy-wc", 660480.0), "se": ("toy-se", 2009088.0)}


def _setup(name: str) -> dict:
    """A setup as its config declares it: the paper's name, the role it finetunes, paradigms."""
    return yaml.safe_load((ROOT / "conf" / "setup" / f"{name}.yaml").read_text())


def _split(correct: int, sizes: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(correct, total) per group, easiest groups first, as a model's answers fall."""
    out = {}
    for key, size in sizes.items():
        out[key] = (min(correct, size), size)
        correct -= out[key][0]
    return out


def _rates(correct: int, sizes: dict[str, int]) -> dict[str, Rate]:
    return {key: Rate.of(c, n) for key, (c, n) in _split(correct, sizes).items()}


def _scores(correct: int, where: str, n: int = 40) -> dict:
    """The fields of a model's scores on a split of ``n`` problems (greedy pass@1)."""
    sizes = {k: round(v * n / 40) for k, v in LEVELS.items()}
    return {
        "n": n,
        "n_problems": n,
        "pass_at_1": correct / n,
        "pass_at_1_interval": wilson_interval(correct, n),
        "per_level": _rates(correct, sizes),
        "per_subject": _rates(correct, {k: round(v * n / 40) for k, v in SUBJECTS.items()}),
        "fpr": Rate.of(correct // 4, correct),  # a quarter of the right answers have wrong reasoning
        "status": {"ok": n},
        "dir": f"/cache/evaluate/{where}",
    }


def _scored(correct: int, transfer: int | None, where: str) -> dict:
    return _scores(correct, where) | (
        {}
        if transfer is None
        else {"transfer": TransferResult(name="toy_arith_variants", **_scores(transfer, f"{where}-t", n=20))}
    )


def _quality(k: int, correct: list[int]) -> dict:
    """Coverage, diversity and FPR of ``k`` samples for each problem of a group; ``correct``: the
    number of correct samples per problem (each distinct under the exact rule)."""
    n_correct = sum(correct)
    return {
        "k": k,
        "n_problems": len(correct),
        "n_samples": k * len(correct),
        "n_correct": n_correct,
        "accuracy": n_correct / (k * len(correct)),
        "coverage": sum(c > 0 for c in correct) / len(correct),
        "diversity": n_correct / len(correct),
        "diversity_by_rule": {
            "exact": n_correct / len(correct),
            "computation": 0.8 * n_correct / len(correct),
        },
        "fpr": Rate.of(n_correct // 5, n_correct),
    }


def _data(k: int, solved: int, run_dir: str, role: str) -> DataMetrics:
    """A sampler's data on 40 training problems: ``solved`` problems have correct samples (half
    of them all ``k``, half one); coverage@j for j = 1, 2, 4, ..., k by the unbiased estimator."""
    correct = [k if i < solved // 2 else 1 for i in range(solved)] + [0] * (40 - solved)
    js = sorted({2**i for i in range(k.bit_length()) if 2**i < k} | {k})
    curve = {str(j): statistics.fmean(1 - math.comb(k - c, j) / math.comb(k, j) for c in correct) for j in js}
    return DataMetrics(
        **_quality(k, correct),
        coverage_curve=curve,
        per_level=_groups(k, correct, LEVELS),
        per_subject=_groups(k, correct, SUBJECTS),
        per_problem_table=f"{run_dir}/metrics/{role}.problems.jsonl",
    )


def _groups(k: int, correct: list[int], sizes: dict[str, int]) -> dict[str, DataQuality]:
    """The data's quality per group of problems (consecutive problems, ``sizes`` of them)."""
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = DataQuality(**_quality(k, correct[start : start + size]))
        start += size
    return out


def summary(
    setup: str,
    budget: str,
    run_dir: str,
    *,
    arms: dict[str, int] | None = None,
    base: int = 9,
    transfer: bool = True,
    solved: tuple[int, int] = (15, 12),
    seed: int = 0,
) -> RunSummary:
    """A complete run: sampling, filtering, data metrics, training and test scores of each arm
    (``arms``: correct test answers of 40) and of the base model (``base``)."""
    spec = _setup(setup)
    target = spec["target"]
    se_k = BUDGETS[budget]
    ks = {"wc": 3 * se_k, "se": se_k}
    arms = arms if arms is not None else {"wc": 14, "se": 12}
    selection = Selection(
        best=CheckpointScore(
            step=6, path="/cache/train/x/checkpoints/checkpoint-6", validation_pass_at_1=0.3
        ),
        checkpoints=[
            CheckpointScore(
                step=s, path=f"/cache/train/x/checkpoints/checkpoint-{s}", validation_pass_at_1=0.3
            )
            for s in (3, 6)
        ],
    )
    return RunSummary(
        run=RunInfo(
            model_pair="toy",
            dataset="toy_arith",
            setup=setup,
            budget=budget,
            seed=seed,
            run_dir=run_dir,
            cache_dir="/cache",
            stages=["dataset", "sample", "verify", "metrics", "train", "evaluate", "report"],
        ),
        sampling=SamplingSection(
            budget=Budget(
                se_samples=se_k, wc_samples=3 * se_k, mode="compute", nominal_ratio=3.04, realised_ratio=3.0
            ),
            models={
                role: SamplingCost(
                    samples_per_problem=k,
                    store=f"/cache/samples/{role}{k}",
                    samples=40 * k,
                    prompt_tokens=30 * 40 * k,
                    generated_tokens=24 * 40 * k,
                    flops=2 * MODELS[role][1] * 54 * 40 * k,
                    dollars=None,
                    truncation_rate=0.0,
                )
                for role, k in ks.items()
            },
            realised_flops_ratio_wc_over_se=0.99,
            realised_dollar_ratio_wc_over_se=None,
        ),
        filter=FilterSection(
            method="answer",
            mode="strict",
            models={
                role: FilterCounts(
                    verified=40 * k,
                    correct=10 * k,
                    truncated=0,
                    kept_truncated=False,
                    kept_for_training=10 * k,
                    status={"ok": 40 * k},
                )
                for role, k in ks.items()
            },
        ),
        data={role: _data(k, solved[i], run_dir, role) for i, (role, k) in enumerate(ks.items())},
        models={
            role: ModelInfo(
                name=name,
                params=params,
                base=Scored(**_scored(base, 3 if transfer else None, f"base-{role}"))
                if role == target
                else None,
            )
            for role, (name, params) in MODELS.items()
        },
        finetune=FinetuneSection(
            setup=setup,
            setup_label=spec["label"],
            target=target,
            target_model=MODELS[target][0],
            base_pass_at_1=base / 40,
            arms={
                arm: ArmResult(
                    **_scored(correct, correct // 2 if transfer else None, f"{setup}-{budget}-{arm}"),
                    paradigm=spec["paradigm"].get(arm),  # as the evaluate stage names it
                    checkpoint_selection=selection,
                )
                for arm, correct in arms.items()
            },
            best_arm=max(arms, key=arms.__getitem__),
            wc_minus_se_pass_at_1=(arms["wc"] - arms["se"]) / 40 if {"wc", "se"} <= set(arms) else None,
        ),
        timing_seconds={"plan": 26.1, "sample": 115.7, "train": 161.2, "evaluate": 211.0},
    )


def write_job(root: Path, name: str, overrides: list[str], run: RunSummary | None, log: str = "") -> Path:
    """A Hydra job folder as a multirun leaves it: .hydra/overrides.yaml, main.log, summary.json."""
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "main.log").write_text(log or "[2026-12-01 22:14:31,205][wcse.runner][INFO] - === stage dataset\n")
    if run is not None:
        run.write(job / "summary.json")  # as the runner writes it
    return job


def grid(root: Path, setups: tuple[str, ...] = ("kd", "w2s"), **kwargs) -> dict[tuple[str, str], RunSummary]:
    """setup x budget jobs, numbered as a multirun numbers them."""
    runs = {}
    for i, (setup, budget) in enumerate((s, b) for s in setups for b in BUDGETS):
        name = f"{i}-budget={budget},setup={setup}"
        runs[(setup, budget)] = summary(setup, budget, str(root / name), **kwargs)
        write_job(
            root, name, ["experiment=toy_tiny", f"setup={setup}", f"budget={budget}"], runs[(setup, budget)]
        )
    return runs


def test_tables_match_the_summaries_cell_for_cell(tmp_path) -> None:
    runs = grid(tmp_path, ("w2s", "kd", "self_improve"), arms={"wc": 14, "se": 12, "wc_one": 11})
    sweep = collect(tmp_path)
    assert len(sweep.used) == 6 and not sweep.failed
    t = tabulate(sweep.used)
    assert t.budgets == ["low", "high"]  # by SE samples per problem, not by name
    assert sorted({k.setup for k in t.finetune}, key=t.setup_rank) == ["kd", "self_improve", "w2s"]  # Table 1
    assert {s: t.paper_name(s) for s in ("kd", "self_improve", "w2s")} == {
        "kd": "Student-LM",
        "self_improve": "WC-LM",
        "w2s": "SE-LM",
    }
    for (setup, budget), run in runs.items():
        ft = run.finetune
        base = run.models[ft.target].base
        for arm, result in ft.arms.items():
            cell = t.finetune[Cell("toy", "toy_arith", setup, budget, "", arm)]
            assert (cell.pass1.mean, (cell.pass1.low, cell.pass1.high)) == (
                result.pass_at_1,
                result.pass_at_1_interval,
            )
            assert cell.pass1.method == "95% Wilson (1 run)" and cell.target_model == ft.target_model
            assert (cell.base.mean, (cell.base.low, cell.base.high)) == (
                ft.base_pass_at_1,
                base.pass_at_1_interval,
            )
            assert {lv: (e.mean, e.low, e.high) for lv, e in cell.per_level.items()} == {
                lv: (r.value, r.low, r.high) for lv, r in result.per_level.items()
            }
            assert cell.transfer_set == "toy_arith_variants"
            assert (cell.transfer.mean, cell.transfer.low, cell.transfer.high) == (
                result.transfer.pass_at_1,
                *result.transfer.pass_at_1_interval,
            )
            assert cell.base_transfer.mean == base.transfer.pass_at_1
    comparisons = t.compare("test")
    assert [(c.setup, c.budget) for c in comparisons] == [
        (s, b) for b in ("low", "high") for s in ("kd", "self_improve", "w2s")
    ]
    assert all(c.diff == pytest.approx(2 / 40) and c.relative == pytest.approx(2 / 12) for c in comparisons)
    assert len(t.compare("transfer")) == 6  # the transfer scores of the same models
    for budget in BUDGETS:
        plan = runs[("kd", budget)].sampling.budget
        assert t.plan_note("toy", "toy_arith", budget) == (
            f"budget {budget}: {plan.se_samples} SE vs {plan.wc_samples} WC samples/problem (compute-matched)"
        )
        for role in ("wc", "se"):
            measured = runs[("kd", budget)].data[role]
            cell = t.data[DataKey("toy", "toy_arith", budget, "", role)]
            assert cell.measurements == 1  # the three setups sampled once: not three repeats
            assert (cell.model, cell.samples, cell.coverage.mean, cell.diversity.mean) == (
                run.models[role].name,
                measured.k,
                measured.coverage,
                measured.diversity,
            )
            assert cell.coverage.method == "1 run, no interval"  # coverage carries no interval of its own
            assert (cell.fpr.mean, cell.fpr.low, cell.fpr.high) == (
                measured.fpr.value,
                measured.fpr.low,
                measured.fpr.high,
            )
            assert {str(k): e.mean for k, e in cell.curve.items()} == measured.coverage_curve


def test_seeds_of_a_cell_are_averaged_with_an_interval_over_them(tmp_path) -> None:
    for seed, correct in ((1, 14), (2, 16), (3, 24)):
        name = f"{seed}-seed"
        run = summary("w2s", "low", str(tmp_path / name), arms={"wc": correct, "se": 12}, seed=seed)
        write_job(tmp_path, name, ["setup=w2s", "budget=low", f"seed={seed}"], run)
    key = Cell("toy", "toy_arith", "w2s", "low", "", "wc")
    values = [14 / 40, 16 / 40, 24 / 40]
    cell = tabulate(collect(tmp_path).used).finetune[key]
    mean = statistics.fmean(values)
    half = 4.303 * statistics.stdev(values) / math.sqrt(3)  # Student's t, 2 degrees of freedom
    assert cell.pass1.n == 3 and cell.pass1.method == "95% t over 3 runs"
    assert cell.pass1.mean == pytest.approx(mean)
    assert (cell.pass1.low, cell.pass1.high) == pytest.approx((mean - half, mean + half), abs=1e-4)
    assert cell.runs == ["1-seed", "2-seed", "3-seed"]
    (tmp_path / "3-seed" / "summary.json").unlink()  # two seeds left: their range
    cell = tabulate(collect(tmp_path).used).finetune[key]
    assert (cell.pass1.mean, cell.pass1.low, cell.pass1.high) == pytest.approx((0.375, 0.35, 0.4))
    assert cell.pass1.method == "min-max of 2 runs"
    sweep = collect(tmp_path)
    md = write_markdown(
        sweep, tabulate(sweep.used), {"finetune_low": tmp_path / "finetune_low.png"}, tmp_path
    )
    assert f"{fmt_pct(cell.pass1)} | min-max of 2 runs" in md.read_text()
    assert "`3-seed`: no summary.json" in md.read_text()


def test_reruns_and_other_settings_are_not_averaged_as_seeds(tmp_path) -> None:
    for name, extra, correct in (
        ("0-first", [], 36),
        ("1-rerun", [], 20),  # the same cell and seed, written later: it replaces the first
        ("2-longer", ["trainer.max_steps=12"], 30),
    ):
        run = summary("kd", "high", str(tmp_path / name), arms={"wc": correct, "se": 12})
        write_job(tmp_path, name, ["setup=kd", "budget=high", *extra], run)
    sweep = collect(tmp_path)
    assert {r.job: r.duplicate_of for r in sweep.runs} == {
        "0-first": "1-rerun",
        "1-rerun": None,
        "2-longer": None,
    }
    cells = tabulate(sweep.used).finetune
    assert cells[Cell("toy", "toy_arith", "kd", "high", "", "wc")].pass1.mean == 0.5
    longer = cells[Cell("toy", "toy_arith", "kd", "high", "trainer.max_steps=12", "wc")]
    assert longer.pass1.mean == 0.75 and longer.pass1.n == 1


def test_jobs_that_left_no_readable_summary_are_listed_not_fatal(tmp_path) -> None:
    grid(tmp_path, ("kd",))
    write_job(tmp_path, "90-died", ["setup=w2s"], None, log="[wcse.runner][INFO] - === stage train\nKilled\n")
    (write_job(tmp_path, "91-garbled", ["setup=w2s"], None) / "summary.json").write_text(
        '{"version": 3, "run": {'
    )
    old = {"budget": {"se_samples": 1}, "finetune": {"arms": {"wc": {"pass@1": 0.3}}}}  # version 1's layout
    (write_job(tmp_path, "92-old", ["setup=w2s", "budget=high"], None) / "summary.json").write_text(
        json.dumps(old)
    )
    raw = json.loads(summary("w2s", "low", "x").model_dump_json(by_alias=True))
    del raw["finetune"]["arms"]["se"]["pass@1"]
    (write_job(tmp_path, "93-incomplete", ["setup=w2s", "budget=low"], None) / "summary.json").write_text(
        json.dumps(raw)
    )
    failed_job = write_job(tmp_path, "94-raised", ["setup=w2s", "budget=high", "seed=1"], None)
    (failed_job / "FAILED").write_text(
        'Traceback (most recent call last):\n  File "wcse/settings.py", line 76, in validate\n'
        "ValueError: setup.mix_wc_fraction=2.0: must be in [0, 1]\n"
    )
    sweep = collect(tmp_path)
    assert len(sweep.used) == 2
    failed = {f.job: f for f in sweep.failed}
    assert list(failed) == ["91-garbled", "92-old", "93-incomplete", "90-died", "94-raised"]
    assert failed["90-died"].reason.startswith("no summary.json") and "Killed" in failed["90-died"].log_tail
    assert "unreadable summary" in failed["91-garbled"].reason
    assert "summary version 1, this wcse reads version 3" in failed["92-old"].reason
    assert "not a wcse run summary" in failed["93-incomplete"].reason
    assert "finetune.arms.se.pass@1" in failed["93-incomplete"].reason  # where the summary is short
    assert failed["94-raised"].reason == "failed: ValueError: setup.mix_wc_fraction=2.0: must be in [0, 1]"
    md = write_markdown(sweep, tabulate(sweep.used), {}, tmp_path).read_text()  # figures: the CLI test
    listed = md.split("## Failed or missing jobs", 1)[1]
    for name in failed:
        assert f"- `{name}`: " in listed
    assert "finetune.arms.se.pass@1" in listed and "in validate" in listed  # the details, then the traceback
    assert "2 runs included, 5 failed or missing jobs" in md


FIGURES = (
    "finetune_low.png",
    "finetune_high.png",
    "transfer_low.png",
    "transfer_high.png",
    "per_level_low.png",
    "per_level_high.png",
    "data_quality.png",
    "coverage_curves.png",
)


def test_the_cli_writes_every_figure_and_report_md(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the console grid on one line per row
    grid(
        tmp_path / "sweep", ("kd", "self_improve", "w2s"), arms={"wc": 14, "se": 12, "mix": 13, "se_one": 10}
    )
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    for name in FIGURES:
        with Image.open(tmp_path / "out" / name) as image:
            image.verify()  # a complete, uncorrupted PNG
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and image.width >= 800 and image.height >= 500, (name, image.size)
            assert round(image.info["dpi"][0]) == 150
    md = (tmp_path / "out" / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in md
    row = next(
        line
        for line in md.splitlines()
        if line.startswith("| toy | toy_arith | WC-LM (self_improve) | toy-wc | WC+SE mix |")
    )
    assert "32.5% [" in row  # 13/40, the label from wcse.train.arms.LABELS
    reading = md.split("## Reading (computed from the numbers below)", 1)[1].split("\n## ", 1)[0]
    assert reading.count("WC data beats SE data in 3/3 setups") == 4  # two budgets, test and transfer
    assert "(Student-LM, kd)" in reading
    out = capsys.readouterr().out
    assert "SE, 1 per problem" in out and "report.md" in out


def test_an_empty_sweep_is_an_error(tmp_path) -> None:
    (tmp_path / "0-died" / ".hydra").mkdir(parents=True)
    assert main([str(tmp_path)]) == 1
    assert not (tmp_path / "report").exists()
