"""The whole method end to end on a tiny toy configuration, and the cache behaviour around it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA, compose_config, needs_data
from wcse import runner
from wcse.artifacts import MissingArtifact
from wcse.settings import validate
from wcse.summary import RunSummary
from wcse.toy import world


def run(root: Path, *overrides: str) -> RunSummary:
    cfg = compose_config(root, "experiment=toy_tiny", *overrides)
    validate(cfg)
    return runner.run(cfg)


def shards(root: Path) -> set[Path]:
    return set((root / "cache" / "samples").rglob("shard-*.jsonl"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, RunSummary]:
    root = tmp_path_factory.mktemp("e2e")
    return root, run(root, "setup=w2s", "budget=low")


def test_summary_carries_the_figures_of_the_method(tiny) -> None:
    root, summary = tiny
    assert RunSummary.read(root / "run" / "summary.json") == summary
    written = json.loads((root / "run" / "summary.json").read_text())
    assert written["version"] == 3 and "pass@1" in written["finetune"]["arms"]["wc"]  # the JSON keeps its names
    budget, sampling = summary.sampling.budget, summary.sampling.models
    assert budget.se_samples == 1 and budget.wc_samples == 3
    assert sampling["wc"].samples == 3 * 40 and sampling["se"].samples == 40
    for arm in ("wc", "se"):
        assert sampling[arm].generated_tokens > 0 and sampling[arm].flops > 0
        data = summary.data[arm]
        assert 0 <= data.coverage <= 1 and data.diversity >= 0 and data.fpr.n >= 0
        assert set(data.per_level) <= {"1", "2", "3", "4", "5"}
        result = summary.finetune.arms[arm]
        assert 0 <= result.pass_at_1 <= 1 and result.n == 40
    # compute-matched: 3x the samples of a 1/3.04x-sized model cost about the same FLOPs
    assert 0.6 < summary.sampling.realised_flops_ratio_wc_over_se < 1.6
    assert summary.finetune.target == "se" and summary.finetune.best_arm in ("wc", "se")
    assert summary.train["wc"].steps == 6
    assert summary.dataset.splits["train"].n == 40 and summary.dataset.splits["train"].source.startswith("generated")
    for arm in ("wc", "se"):  # the paper's selection: N evenly spaced checkpoints scored on validation
        selection = summary.finetune.arms[arm].checkpoint_selection
        scored = selection.checkpoints
        assert [c.step for c in scored] == [3, 6]  # round(i * 6 / 2): toy_tiny keeps 2
        best = max(scored, key=lambda c: (c.validation_pass_at_1, c.step))
        assert selection.best == best and Path(best.path).is_dir()


def test_a_repeat_run_redoes_nothing(tiny) -> None:
    root, _ = tiny
    before = shards(root)
    summary = run(root, "setup=w2s", "budget=low")
    assert all(event.cached for event in summary.artifacts)
    assert shards(root) == before


def test_another_setup_reuses_the_samples(tiny) -> None:
    root, _ = tiny
    before = shards(root)
    summary = run(root, "setup=kd", "budget=low")
    assert shards(root) == before  # no new generation
    built = {e.stage for e in summary.artifacts if not e.cached}
    assert built <= {"train", "evaluate"}
    assert summary.finetune.target == "student"


@pytest.mark.slow
def test_sampled_evaluation_gives_maj_at_k(tiny) -> None:
    root, _ = tiny
    summary = run(root, "setup=w2s", "budget=low", "evaluator=sampled", "evaluator.samples=4", "evaluator.maj_ks=[1,2,4]")
    for arm in ("wc", "se"):
        result = summary.finetune.arms[arm]
        assert result.n == 4 * 40 and result.n_problems == 40
        assert result.maj["1"] == pytest.approx(result.pass_at_1)  # one-sample groups: the same mean
        assert 0 <= result.maj["4"] <= 1 and set(result.per_subject) <= {"one_person", "two_people"}
        samples = [json.loads(line) for line in open(Path(result.dir) / "samples.jsonl")]
        assert {s["params"]["temperature"] for s in samples} == {0.7} and len(samples) == 160


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["toy_grid", "toy_ablations"])
def test_the_toy_experiments_run_end_to_end(tiny, experiment: str) -> None:
    root, _ = tiny
    small = [  # toy_tiny's sizes, so the samples in the cache are reused
        "dataset.toy.n_train=40", "dataset.toy.n_validation=10", "dataset.toy.n_test=40", "trainer.max_steps=6",
        "trainer.per_device_batch_size=8", "trainer.checkpoints=2", "evaluator.baselines=[]",
    ]
    extra = ["seed=1"] if experiment == "toy_grid" else []
    cfg = compose_config(root, f"experiment={experiment}", *small, *extra)
    validate(cfg)
    summary = runner.run(cfg)
    arms = summary.finetune.arms
    if experiment == "toy_grid":
        assert cfg.trainer.seed == 1 and cfg.evaluator.temperature == 0.0  # seeds vary the finetuning only
        assert set(arms) == {"wc", "se"} and summary.finetune.base_zero_shot_pass_at_1 is not None
    else:  # every data arm trained: the mixture and the one-sample-per-problem arms built as defined
        train = summary.train
        assert set(train) == set(arms) == {"wc", "se", "mix", "wc_one", "se_one"}
        wc_rows, se_rows = train["wc"].data.rows, train["se"].data.rows
        assert train["mix"].data.rows == min(wc_rows, se_rows)
        assert train["mix"].data.by_source["wc"] == int(0.5 * min(wc_rows, se_rows) + 0.5)
        data = summary.data["wc"]  # coverage@M: the share of problems with a correct sample
        assert train["wc_one"].data.rows == round(data.coverage * data.n_problems) <= wc_rows
        for arm in arms:
            assert len(arms[arm].checkpoint_selection.checkpoints) == 2


# Arms whose logic ends at the data (how the budget is spent): their finetunes are the same stage
# as every other arm's, so these runs stop after the metrics.
DATA_STAGES = "stages=[dataset,sample,verify,metrics]"


@pytest.mark.slow
@pytest.mark.parametrize(
    "arm",
    [["verifier=process"], ["budget=sample_matched", "+sampler.role_temperature.se=1.0", DATA_STAGES],
     ["budget.wc_spend=questions", "dataset.toy.n_train=120", "budget.problems=40", DATA_STAGES],
     ["budget.se_samples=2", "setup.arms=[mix_budget]", "setup.mix_budget_wc_share=0.5"],
     ["budget.allocation=stop_at_k", DATA_STAGES], ["trainer.lr_grid=[1e-4,3e-4]"]],
    ids=["process_filter", "sample_matched_hot_se", "questions", "mixing", "adaptive", "lr_grid"],
)
def test_each_research_arm_runs_end_to_end(tiny, arm: list[str]) -> None:
    root, _ = tiny
    summary = run(root, "setup=self_improve", *arm)
    sampling, kept = summary.sampling.models, summary.filter.models
    if arm[0] == "verifier=process":  # every kept sample has every step right: no false positive left
        assert summary.filter.method == "process"
        assert all(kept[r].kept_false_positives is None or kept[r].kept_false_positives.value == 0.0 for r in kept)
        assert all(kept[r].kept_for_training <= kept[r].correct for r in kept)
    elif arm[0] == "budget=sample_matched":
        assert sampling["se"].samples_per_problem == sampling["wc"].samples_per_problem == 3
        temperatures = {json.loads(line)["params"]["temperature"] for s in Path(sampling["se"].store).glob("shard-*.jsonl") for line in open(s)}
        assert temperatures == {1.0} and summary.sampling.realised_flops_ratio_wc_over_se < 0.5  # SE spent ~3x
    elif arm[0].startswith("budget.wc_spend"):
        assert (sampling["wc"].problems, sampling["wc"].samples_per_problem) == (120, 1)
        assert (sampling["se"].problems, sampling["se"].samples_per_problem) == (40, 1)
        assert 0.6 < summary.sampling.realised_flops_ratio_wc_over_se < 1.6  # still compute-matched
    elif arm[0].startswith("trainer.lr_grid"):  # each arm at both rates; rate and checkpoint chosen together on validation
        for name, result in summary.finetune.arms.items():
            assert [t.learning_rate for t in summary.train[name].grid] == [1e-4, 3e-4]
            candidates = result.checkpoint_selection.checkpoints
            assert {c.learning_rate for c in candidates} == {1e-4, 3e-4}
            best = result.checkpoint_selection.best
            assert best == max(candidates, key=lambda c: (c.validation_pass_at_1, c.step))
            assert best.path.startswith(summary.train[name].at(best.learning_rate).dir)
    elif arm[0] == "budget.allocation=stop_at_k":  # the uniform budget, spent on the unsolved problems
        assert sampling["wc"].samples == 3 * 40 and sampling["se"].samples == 40 and sampling["wc"].allocation == "stop_at_k"
        assert summary.data["wc"].solved >= summary.data["wc"].coverage
    else:  # 2 SE / 6 WC samples per problem, half the compute each: 3 WC + 1 SE of each problem
        by_source = summary.train["mix_budget"].data.by_source
        assert by_source["wc"] <= 3 * 40 and by_source.get("se", 0) <= 40


def test_a_higher_budget_generates_only_the_difference(tiny) -> None:
    root, _ = tiny
    before = {s.read_text() for s in shards(root)}
    summary = run(root, "setup=kd", "budget=high", "stages=[dataset,sample,verify,metrics]")
    new = [s for s in shards(root) if s.read_text() not in before]
    new_samples = sum(len(s.read_text().splitlines()) for s in new)
    assert new_samples == (30 - 3) * 40 + (10 - 1) * 40
    assert summary.data["wc"].k == 30


def test_stage_subset_without_its_inputs_names_the_missing_stage(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifact, match=r"stage 'sample' is not in `stages` .*: add 'sample' to stages"):
        run(tmp_path, "stages=[verify]")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "samples").exists()  # before anything ran
    with pytest.raises(MissingArtifact, match=r"stage 'train' is not in `stages` .*the wc finetune at"):
        run(tmp_path, "stages=[evaluate]")


def test_cli_rejects_unknown_option_with_hydras_message() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wcse.main", "model_pair=gpt5"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert "Could not find 'model_pair/gpt5'" in out.stderr and "Available options" in out.stderr


def test_a_damaged_artifact_is_rebuilt_in_a_real_run(tiny) -> None:
    root, first = tiny
    verdicts = Path(next(e.path for e in first.artifacts if e.stage == "verify")) / "verdicts.jsonl"
    text = verdicts.read_text()
    verdicts.write_text(text.replace('"correct": true', '"correct": false', 1) if '"correct": true' in text else text[:-2])
    summary = run(root, "setup=w2s", "budget=low", "stages=[dataset,sample,verify,metrics]")
    rebuilt = [e for e in summary.artifacts if not e.cached]
    assert [e.stage for e in rebuilt] == ["verify"]
    assert verdicts.read_text() == text  # rebuilt from the samples, not the tampered copy
    assert summary.data == first.data


def test_a_failed_multirun_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "wcse.main", "-m", "experiment=toy_tiny", "stages=[dataset]",
         "setup.mix_wc_fraction=2,0.5", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    failed, done = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert failed.name == "0-experiment=toy_tiny,setup.mix_wc_fraction=2,stages=[dataset]"  # no paths in names
    assert "setup.mix_wc_fraction=2" in (failed / "FAILED").read_text()
    assert not (failed / "summary.json").exists()
    assert RunSummary.read(done / "summary.json").dataset.splits["train"].n == 40


def test_a_transfer_set_scores_the_same_models_without_retraining(tiny) -> None:
    root, plain = tiny
    summary = run(root, "setup=w2s", "budget=low", "dataset@transfer=toy_arith_variants", "transfer.toy.n_test=10")
    built = [e for e in summary.artifacts if not e.cached]
    assert {e.stage for e in built} == {"dataset", "evaluate"}  # the transfer set, and scores on it
    transfer_set = summary.dataset.transfer
    assert transfer_set.name == "toy_arith_variants" and transfer_set.splits["test"].n == 20
    originals = {p.id for p in world.generate("test", 10, 0)}  # the first 10 of the run's 40 test problems
    ft = summary.finetune
    for arm in ("wc", "se"):
        result, before = ft.arms[arm], plain.finetune.arms[arm]
        assert result.pass_at_1 == before.pass_at_1 and result.dir == before.dir  # test scores reused
        transfer = result.transfer
        assert transfer.name == "toy_arith_variants" and transfer.n == 20 and transfer.dir != result.dir
        problems = {s["problem_id"] for s in map(json.loads, open(Path(transfer.dir) / "samples.jsonl"))}
        assert {p.rsplit("-v", 1)[0] for p in problems} == originals and len(problems) == 20
    assert ft.wc_minus_se_transfer_pass_at_1 == ft.arms["wc"].transfer.pass_at_1 - ft.arms["se"].transfer.pass_at_1
    assert 0 <= summary.models["se"].base.transfer.pass_at_1 <= 1


def test_a_transfer_set_without_data_is_refused_before_anything_runs(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, "experiment=toy_tiny", "dataset@transfer=functional_math", "paths.data_dir=null")
    with pytest.raises(ValueError, match="transfer=functional_math: .* transfer.test has neither a local file"):
        validate(cfg)


@needs_data("math500/test.jsonl")
def test_functional_math_is_read_as_a_transfer_set_from_the_data_dir(tmp_path: Path) -> None:
    """The real-data transfer path up to the problems: MATH-format rows (here MATH-500's first 25,
    standing in for a Functional MATH snapshot) under paths.data_dir, keyed apart from the dataset."""
    rows = (SHARED_DATA / "math500" / "test.jsonl").read_text().splitlines()[:25]
    (tmp_path / "data" / "functional_math").mkdir(parents=True)
    (tmp_path / "data" / "functional_math" / "test.jsonl").write_text("\n".join(rows) + "\n")
    cfg = compose_config(tmp_path, "experiment=toy_tiny", "dataset@transfer=functional_math", f"paths.data_dir={tmp_path / 'data'}")
    validate(cfg)
    datasets = runner.plan(cfg).outputs["dataset"]
    problems = datasets.transfer.splits
    assert [len(problems[s]) for s in ("train", "validation", "test")] == [0, 0, 25]
    assert problems["test"][0].question == json.loads(rows[0])["problem"] and problems["test"][0].level is not None
    assert datasets.transfer.id.startswith("functional_math@") and datasets.transfer.id != datasets.main.id
