"""Iterated rounds (wcse.rounds): each round's runs, and the data flow from one round to the next."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_config
from wcse import rounds
from wcse.settings import validate


def test_the_tracks_need_two_setups_with_the_arms_they_train() -> None:
    assert rounds.setups() == {"self_improve": ["wc"], "w2s": ["wc", "se"]}
    # each sampler's next model is trained in a self-improvement track on its own data
    for role, track in rounds.NEXT_SAMPLER.items():
        assert rounds.TRACKS[track].arm == role


def test_a_job_keeps_its_overrides_but_those_a_round_sets() -> None:
    task = ["seed=1", "setup=kd", "setup.arms=[wc]", "rounds=3", "paths.run_dir=/x", "+sampler.role_temperature.se=1.0", "budget=high"]
    assert rounds.job_overrides(task) == ["seed=1", "+sampler.role_temperature.se=1.0", "budget=high"]


def test_a_later_round_samples_with_the_finetuned_models_and_finetunes_the_base(tmp_path: Path) -> None:
    base = {"wc": "toy:wc", "se": "toy:se"}
    first = rounds.round_overrides(tmp_path, 1, "w2s", base, base)
    cfg = compose_config(tmp_path, "experiment=toy_rounds", *first)
    validate(cfg)
    assert cfg.model_pair.wc.path == "toy:wc" and cfg.model_pair.wc.target is None
    assert (cfg.setup.target, list(cfg.setup.arms), cfg.rounds) == ("se", ["wc", "se"], 1)
    assert cfg.paths.run_dir == str(tmp_path / "round-1" / "w2s")

    tuned = {"wc": str(tmp_path / "a dir" / "wc-model"), "se": str(tmp_path / "se-model")}
    cfg = compose_config(tmp_path, "experiment=toy_rounds", *rounds.round_overrides(tmp_path, 2, "self_improve", tuned, base))
    assert (cfg.model_pair.wc.path, cfg.model_pair.wc.target) == (tuned["wc"], "toy:wc")
    assert (cfg.model_pair.se.path, cfg.model_pair.se.target) == (tuned["se"], "toy:se")
    assert cfg.setup.target == "wc" and list(cfg.setup.arms) == ["wc"]


def test_rounds_need_the_finetune_and_a_sampler_that_loads_it(tmp_path: Path) -> None:
    from wcse.errors import ConfigError

    with pytest.raises(ConfigError, match=r"rounds=3: .* stages lack \['evaluate'\]"):
        validate(compose_config(tmp_path, "experiment=toy_rounds", "stages=[dataset,sample,verify,train]"))
    with pytest.raises(ConfigError, match="rounds=2: .*sampler=openai"):
        validate(compose_config(tmp_path, "experiment=gemini_math", "rounds=2"))


@pytest.mark.slow
def test_two_rounds_run_end_to_end_and_the_second_samples_with_the_first_finetunes(tmp_path: Path) -> None:
    job = ["experiment=toy_tiny", "rounds=2"]
    cfg = compose_config(tmp_path, *job)
    runs = rounds.run(cfg, lambda extra: compose_config(tmp_path, *job, *extra))
    assert [(c.setup.name, Path(c.paths.run_dir).parent.name) for c, _ in runs] == [
        ("self_improve", "round-1"), ("w2s", "round-1"), ("self_improve", "round-2"), ("w2s", "round-2")
    ]
    first = {c.setup.name: s for c, s in runs[:2]}
    chosen = rounds.next_samplers(first)
    for round_cfg, summary in runs[2:]:
        for role in ("wc", "se"):
            assert round_cfg.model_pair[role].path == chosen[role] and Path(chosen[role]).is_dir()
            assert round_cfg.model_pair[role].target == f"toy:{role}"  # finetuned from the base again
        assert summary.finetune.base_pass_at_1 == first[round_cfg.setup.name].finetune.base_pass_at_1
        # new samplers: new samples, at the same per-round budget
        assert summary.sampling.models["wc"].store != first["w2s"].sampling.models["wc"].store
        assert summary.sampling.models["wc"].samples == first["w2s"].sampling.models["wc"].samples
    record = json.loads((tmp_path / "run" / "rounds.json").read_text())["rounds"]
    assert [r["round"] for r in record] == [1, 2] and record[1]["samplers"] == chosen
    assert set(record[0]["pass@1"]) == set(rounds.TRACKS)
    assert (tmp_path / "run" / "round-2" / "w2s" / "summary.json").is_file()


def test_the_report_follows_each_track_by_round_over_seeds(tmp_path: Path) -> None:
    from tests.test_report_sweep import summary, write_job
    from wcse.report.__main__ import main
    from wcse.report.arms import round_series
    from wcse.report.sweep import collect

    sweep = tmp_path / "sweep"
    for seed in range(3):  # a rounds job: no summary at its top, one per round and setup below it
        job = write_job(sweep, f"{seed}-seed={seed}", ["experiment=toy_rounds", f"seed={seed}"], None)
        for r in (1, 2):
            for setup in rounds.setups():
                run_dir = job / f"{rounds.ROUND_DIR}{r}" / setup
                run_dir.mkdir(parents=True)
                summary(setup, "low", str(run_dir), arms={"wc": 10 + 2 * r + seed, "se": 12 + r}, base=8).write(run_dir / "summary.json")
    runs = collect(sweep)
    assert not runs.failed and len(runs.used) == 12  # rounds are cells of their own, not reruns of one
    series = {k.track: v for k, v in round_series(runs.used).items()}
    assert set(series) == set(rounds.TRACKS)
    assert [r for r, _ in series["w2s"]] == [0, 1, 2]
    assert series["w2s"][0][1].mean == pytest.approx(8 / 40)  # round 0: the target before finetuning
    assert series["wc_self_improvement"][2][1].mean == pytest.approx((14 + 15 + 16) / 3 / 40) and series["wc_self_improvement"][2][1].n == 3
    assert series["se_self_improvement"][1][1].mean == pytest.approx(13 / 40)
    assert main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Rounds: test pass@1 by round" in md and "](rounds.png)" in md and "| round 2 |" in md
