"""The research arms' logic without the slow runs: budget accounting when WC spends on more
questions, the budget-split mix, the process filter and its FPR after filtering, per-role
temperatures, the arms' experiment configs, and the report's frontier and filter tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_config
from wcse import budget
from wcse.errors import ConfigError
from wcse.records import Verdict
from wcse.report.arms import filter_cells, frontier
from wcse.settings import validate
from wcse.stages.sample import sampling_params
from wcse.stages.verify import Filtered, kept_false_positives, process_keep
from wcse.train import arms


def plan(se: int, wc: int) -> budget.SampleBudget:
    return budget.SampleBudget(se, wc, "compute", wc / se, wc / se)


def test_wc_spending_on_questions_buys_as_many_sample_slots_as_on_samples() -> None:
    low = plan(1, 3)
    assert budget.spread(low, 1000, 3000, "samples") == {"se": (1000, 1), "wc": (1000, 3)}
    questions = budget.spread(low, 1000, 3000, "questions")
    assert questions == {"se": (1000, 1), "wc": (3000, 1)}
    # equal compute: problems x samples per problem x WC's share of a sample's cost
    assert questions["wc"][0] * questions["wc"][1] == 1000 * 3
    assert budget.spread(plan(3, 9), 100, 300, "questions") == {"se": (100, 3), "wc": (300, 3)}
    assert budget.spread(plan(2, 3), 3, 10, "questions")["wc"] == (5, 2)  # 4.5 problems: nearest, halves up


def test_questions_beyond_the_train_pool_are_refused_with_the_largest_that_fits() -> None:
    with pytest.raises(ValueError, match=r"buys 3000 problems .* pool has 2000; lower budget.problems to at most 666"):
        budget.spread(plan(1, 3), 1000, 2000, "questions")
    with pytest.raises(ValueError, match="budget.problems=0"):
        budget.spread(plan(1, 3), 0, 10)
    with pytest.raises(ValueError, match="wc_spend='more'"):
        budget.spread(plan(1, 3), 10, 10, "more")


def rows(source: str, per_problem: int, problems: int = 2) -> list[dict]:
    return [
        {"prompt": f"q{p}", "completion": f"{source}{p}.{j}", "problem_id": f"p{p}", "index": j}
        for p in range(problems)
        for j in range(per_problem)
    ]


def test_budget_split_is_the_papers_15_wc_and_5_se_at_the_high_budget() -> None:
    assert arms.budget_split(0.5, 30, 10) == {"wc": 15, "se": 5}
    assert arms.budget_split(1.0, 9, 3) == {"wc": 9, "se": 0}
    assert arms.budget_split(1 / 3, 9, 3) == {"wc": 3, "se": 2}
    with pytest.raises(ValueError, match="mix_budget_wc_share"):
        arms.budget_split(1.5, 9, 3)


def test_the_budget_mix_keeps_a_prefix_of_each_models_samples() -> None:
    data = arms.build_arm("mix_budget", {"wc": rows("w", 9), "se": rows("s", 3)}, split={"wc": 3, "se": 2})
    assert sorted((r["source"], r["problem_id"], r["index"]) for r in data) == sorted(
        [("wc", f"p{p}", j) for p in range(2) for j in range(3)] + [("se", f"p{p}", j) for p in range(2) for j in range(2)]
    )
    with pytest.raises(ValueError, match="needs the sample index"):
        arms.build_arm("mix_budget", {"wc": [{"problem_id": "p0"}], "se": []}, split={"wc": 1, "se": 1})
    with pytest.raises(ValueError, match="needs the samples per problem"):
        arms.build_arm("mix_budget", {"wc": rows("w", 1), "se": rows("s", 1)})


def verdict(pid: str, j: int, correct: bool, steps: bool | None) -> Verdict:
    return Verdict(f"{pid}-{j}", pid, j, "1", correct, steps, "ok")


def test_the_process_filter_keeps_only_right_answers_with_every_step_right(tmp_path: Path) -> None:
    verdicts = [
        verdict("a", 0, True, True), verdict("a", 1, True, False),  # a false positive
        verdict("b", 0, False, None), verdict("b", 1, True, None),  # reasoning unchecked: not kept
    ]
    assert process_keep(verdicts) == [True, False, False, False]
    # the FPR after a filter, over the kept samples whose reasoning was checked
    kept = [{"problem_id": "a", "index": 0}, {"problem_id": "a", "index": 1}, {"problem_id": "b", "index": 1}]
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    rate = kept_false_positives(Filtered("wc", tmp_path).sft_rows(), verdicts)
    assert (rate.value, rate.n) == (0.5, 2)
    # real data without a steps judge checks no reasoning: no FPR, rather than an empty one
    assert kept_false_positives(kept[2:], verdicts) is None


def test_a_role_samples_at_its_own_temperature(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, "+sampler.role_temperature.se=1.0")
    validate(cfg)
    assert sampling_params(cfg, cfg.dataset.prompt, "se")["temperature"] == 1.0
    assert sampling_params(cfg, cfg.dataset.prompt, "wc")["temperature"] == cfg.sampler.temperature
    with pytest.raises(ConfigError, match=r"role_temperature: unknown sampler role\(s\) \['student'\]"):
        validate(compose_config(tmp_path, "+sampler.role_temperature.student=1.0"))
    with pytest.raises(ConfigError, match="budget.wc_spend='more'"):
        validate(compose_config(tmp_path, "budget.wc_spend=more"))


@pytest.mark.parametrize(
    ("experiment", "check"),
    [
        ("toy_sample_matched", lambda c: c.setup.name == "self_improve" and c.sampler.role_temperature.se == 0.5),
        ("toy_questions", lambda c: c.dataset.toy.n_train == 3000 and c.budget.problems == 1000),
        ("toy_process_filter", lambda c: c.budget.name == "low"),
        ("toy_mixing", lambda c: "mix_budget" in c.setup.arms and c.budget.se_samples == 3),
        ("toy_budget_sweep", lambda c: c.setup.target == "wc"),
        ("toy_lr", lambda c: c.trainer.seed == c.seed and list(c.trainer.lr_grid) == [3e-5, 1e-4, 3e-4]),
        ("toy_adaptive", lambda c: c.budget.max_per_problem == 12),
        ("toy_rounds", lambda c: c.rounds == 3 and c.budget.name == "low"),
    ],
)
def test_each_arm_experiment_composes_and_validates(tmp_path: Path, experiment: str, check) -> None:
    cfg = compose_config(tmp_path, f"experiment={experiment}")
    validate(cfg)
    assert check(cfg)


def test_the_sample_matched_budget_has_a_finetuning_schedule_on_every_local_pair(tmp_path: Path) -> None:
    for pair in ("toy", "gemma2"):
        cfg = compose_config(tmp_path, f"model_pair={pair}", "budget=sample_matched", "trainer=zero2")
        assert cfg.model_pair.wc.finetune.steps.sample_matched == cfg.model_pair.wc.finetune.steps.low
        assert budget.plan(3, mode="number").wc_samples == 3


def test_the_frontier_puts_each_arms_pass_at_1_against_its_sampling_flops(tmp_path: Path) -> None:
    from tests.test_report_sweep import BUDGETS, grid
    from wcse.report.__main__ import main
    from wcse.report.sweep import collect

    runs = grid(tmp_path / "sweep", ("kd", "w2s"), arms={"wc": 14, "se": 12})
    series = frontier(collect(tmp_path / "sweep").used)
    assert {(k.setup, k.arm) for k in series} == {(s, a) for s in ("kd", "w2s") for a in ("wc", "se")}
    for key, points in series.items():
        assert [p.budget for p in points] == sorted(BUDGETS, key=BUDGETS.get)  # cheaper budget first
        for p in points:
            assert p.flops == runs[(key.setup, p.budget)].sampling.models[key.arm].flops
            assert p.pass1.mean == runs[(key.setup, p.budget)].finetune.arms[key.arm].pass_at_1
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Compute-optimal frontier" in md and "](frontier.png)" in md
    assert "## Filtering" not in md  # answer filter, no FPR after it: nothing new to show


def test_the_filter_table_sets_the_process_filter_beside_the_answer_filter(tmp_path: Path) -> None:
    from tests.test_report_sweep import summary, write_job
    from wcse.report.sweep import collect
    from wcse.summary import Rate

    for i, method in enumerate(("answer", "process")):
        run = summary("self_improve", "low", str(tmp_path / f"{i}"))
        models = {
            role: counts.model_copy(update={"kept_false_positives": Rate.of(0 if method == "process" else 3, 10)})
            for role, counts in run.filter.models.items()
        }
        run = run.model_copy(update={"filter": run.filter.model_copy(update={"method": method, "models": models})})
        write_job(tmp_path, f"{i}-verifier={method}", ["experiment=toy_process_filter", f"verifier={method}"], run)
    cells = filter_cells(collect(tmp_path).used)
    assert {(k.method, k.role, k.variant) for k in cells} == {(m, r, "") for m in ("answer", "process") for r in ("wc", "se")}
    after = {(k.method, k.role): c.fpr_after.mean for k, c in cells.items()}
    assert after[("process", "wc")] == 0 and after[("answer", "wc")] == 0.3


def test_each_arms_learning_rate_is_chosen_on_validation_and_read_on_test(tmp_path: Path) -> None:
    from tests.test_report_sweep import summary, write_job
    from wcse.report.arms import lr_choices
    from wcse.report.sweep import collect

    # WC's validation peaks at 1e-4, SE's at 3e-4; the test scores differ from the validation order
    validation = {("wc", 1e-4): 0.30, ("wc", 3e-4): 0.20, ("se", 1e-4): 0.25, ("se", 3e-4): 0.35}
    test = {("wc", 1e-4): 10, ("wc", 3e-4): 16, ("se", 1e-4): 12, ("se", 3e-4): 11}
    for i, rate in enumerate((1e-4, 3e-4)):
        run = summary("self_improve", "low", str(tmp_path / f"{i}"), arms={a: test[(a, rate)] for a in ("wc", "se")})
        arms_ = {
            arm: result.model_copy(update={"checkpoint_selection": result.checkpoint_selection.model_copy(
                update={"best": result.checkpoint_selection.best.model_copy(update={"validation_pass_at_1": validation[(arm, rate)]})})})
            for arm, result in run.finetune.arms.items()
        }
        run = run.model_copy(update={"finetune": run.finetune.model_copy(update={"arms": arms_})})
        write_job(tmp_path, f"{i}-trainer.learning_rate={rate}", ["experiment=toy_lr", f"trainer.learning_rate={rate}"], run)
    choices = {k.arm: c for k, c in lr_choices(collect(tmp_path).used).items()}
    assert (choices["wc"].chosen, choices["se"].chosen) == ({1e-4: 1}, {3e-4: 1})
    assert choices["wc"].test.mean == 10 / 40 and choices["se"].test.mean == 11 / 40


def test_an_lr_grid_plans_one_finetune_per_rate_each_the_single_rate_finetune(tmp_path: Path) -> None:
    from wcse import runner

    grid = runner.plan(compose_config(tmp_path, "experiment=toy_tiny", "trainer.lr_grid=[3e-5,1e-4]")).outputs["train"]
    single = runner.plan(compose_config(tmp_path, "experiment=toy_tiny", "trainer.learning_rate=1e-4")).outputs["train"]
    assert [t.learning_rate for t in grid["wc"]] == [3e-5, 1e-4]
    assert grid["wc"][1].path == single["wc"][0].path  # the grid is not a setting of a finetune: its runs are shared
    assert grid["wc"][0].path != grid["wc"][1].path and grid["wc"][0].data == grid["wc"][1].data  # one arm data, two runs


@pytest.mark.parametrize("grid", ["[]", "[1e-4,1e-4]", "[1e-4,-1e-3]"])
def test_a_bad_lr_grid_is_refused_naming_the_key(tmp_path: Path, grid: str) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.lr_grid"):
        validate(compose_config(tmp_path, "experiment=toy_tiny", f"trainer.lr_grid={grid}"))


def test_an_in_run_lr_grid_reports_each_runs_own_choice_and_its_test_score(tmp_path: Path) -> None:
    from tests.test_report_sweep import summary, write_job
    from wcse.report.arms import lr_choices
    from wcse.report.sweep import collect
    from wcse.summary import CheckpointScore

    # validation by (seed, rate) of WC's checkpoints: seed 0 peaks at 3e-4, seed 1 at 1e-4
    validation = {(0, 1e-4): 0.20, (0, 3e-4): 0.30, (1, 1e-4): 0.40, (1, 3e-4): 0.10}
    for seed in (0, 1):
        run = summary("self_improve", "low", str(tmp_path / f"{seed}"), arms={"wc": 10 + seed, "se": 12}, seed=seed)
        wc = run.finetune.arms["wc"]
        checkpoints = [
            CheckpointScore(step=step, path=f"/c/{rate}/{step}", validation_pass_at_1=validation[(seed, rate)] - (step == 3) * 0.05,
                            learning_rate=rate)
            for rate in (1e-4, 3e-4) for step in (3, 6)
        ]
        best = max(checkpoints, key=lambda c: (c.validation_pass_at_1, c.step))
        selection = wc.checkpoint_selection.model_copy(update={"best": best, "checkpoints": checkpoints})
        arms_ = {**run.finetune.arms, "wc": wc.model_copy(update={"checkpoint_selection": selection})}
        run = run.model_copy(update={"finetune": run.finetune.model_copy(update={"arms": arms_})})
        write_job(tmp_path, f"{seed}-seed={seed}", ["experiment=toy_lr", f"seed={seed}"], run)
    choices = {k.arm: c for k, c in lr_choices(collect(tmp_path).used).items()}
    assert set(choices) == {"wc"}  # SE's runs scored one rate: no choice to report
    wc = choices["wc"]
    assert wc.chosen == {1e-4: 1, 3e-4: 1}
    assert (wc.validation[1e-4].mean, wc.validation[3e-4].mean) == pytest.approx((0.30, 0.20))
    assert wc.test.mean == pytest.approx((10 + 11) / 80)  # each run's own selected checkpoint, tested


def run_policy(policy, problem_ids, truth) -> dict[str, int]:
    """Drive an allocation with known outcomes (``truth(pid, j)``); returns samples per problem."""
    from wcse.sampling import allocate

    correct: dict[tuple[str, int], bool] = {}
    drawn: dict[str, int] = dict.fromkeys(problem_ids, 0)
    for wave in allocate.waves(policy, problem_ids, correct):
        for pid, j in wave:
            assert j == drawn[pid]  # a prefix of the problem's uniform sequence: stores nest
            drawn[pid] += 1
            correct[(pid, j)] = truth(pid, j)
    return drawn


def test_stop_at_k_retires_solved_problems_and_spends_the_budget_on_the_rest() -> None:
    from wcse.sampling.allocate import Policy

    ids = ["easy", "mid", "hard", "never"]
    truth = {"easy": lambda j: True, "mid": lambda j: j >= 2, "hard": lambda j: j >= 5, "never": lambda j: False}
    drawn = run_policy(Policy("stop_at_k", budget=12, cap=8, k=1), ids, lambda pid, j: truth[pid](j))
    assert sum(drawn.values()) == 12  # the uniform budget of 3 per problem, spent in full
    assert drawn["easy"] == 1 and drawn["mid"] == 3  # retired at their first correct sample
    assert drawn["hard"] + drawn["never"] == 8 and abs(drawn["hard"] - drawn["never"]) <= 1
    # k = 2 and a cap: nobody passes the cap, and spending stops when nothing is active
    drawn = run_policy(Policy("stop_at_k", budget=100, cap=4, k=2), ids, lambda pid, j: truth[pid](j))
    assert drawn == {"easy": 2, "mid": 4, "hard": 4, "never": 4}


def test_difficulty_gives_the_rest_in_proportion_to_failure_on_the_probe() -> None:
    from wcse.sampling.allocate import Policy, proportional

    ids = ["a", "b", "c"]  # on 2 probes: a solves both, b one, c none
    truth = {"a": lambda j: True, "b": lambda j: j == 0, "c": lambda j: False}
    drawn = run_policy(Policy("difficulty", budget=12, cap=10, probe=2), ids, lambda pid, j: truth[pid](j))
    assert drawn == {"a": 2, "b": 2 + 2, "c": 2 + 4}  # the 6 left: failure rates 0, 0.5, 1
    assert proportional({"x": 1.0, "y": 1.0, "z": 0.0}, 5, cap=2) == {"x": 2, "y": 2, "z": 0}  # capped: 1 unspent
    assert proportional({"x": 2.0, "y": 1.0}, 4, cap=10) == {"x": 3, "y": 1}  # 2.67 / 1.33: largest remainder
    with pytest.raises(ValueError, match="cannot probe 3 problems 2 times"):
        run_policy(Policy("difficulty", budget=5, cap=4, probe=2), ids, lambda pid, j: True)
