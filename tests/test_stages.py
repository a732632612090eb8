"""The stage graph: declared once, ordered, printed, and checked against the cache before a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_config
from wcse import runner
from wcse.artifacts import MissingArtifact
from wcse.stages import DEFAULT, OPT_IN, ORDER, describe, graph


def test_the_graph_is_ordered_and_every_need_comes_first() -> None:
    stages = graph()
    assert tuple(s.name for s in stages) == ORDER
    for i, stage in enumerate(stages):
        assert set(stage.needs) <= set(ORDER[:i]), stage.name
        assert stage.output and (stage.missing is not None)


def test_the_default_selection_is_the_graph_less_the_opt_in_stages(compose_cfg) -> None:
    assert list(compose_cfg().stages) == list(DEFAULT) == [s for s in ORDER if s not in OPT_IN]


def test_needed_closes_over_the_needs_in_graph_order() -> None:
    names = lambda selected: [s.name for s in runner.needed(graph(), frozenset(selected))]  # noqa: E731
    assert names(["metrics"]) == ["dataset", "pretrain", "sample", "verify", "metrics"]
    assert names(["evaluate"]) == ["dataset", "pretrain", "sample", "verify", "train", "evaluate"]
    assert names(["report"]) == ["report"]


def test_the_readme_lists_the_graph_as_python_m_wcse_stages_prints_it() -> None:
    out = subprocess.run([sys.executable, "-m", "wcse.stages"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == describe()
    readme = (ROOT / "README.md").read_text()
    assert describe() in readme, "README's stage listing is stale: paste `python -m wcse.stages` into it"


def test_planning_builds_nothing_but_the_dataset(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, "experiment=toy_tiny")
    planned = runner.plan(cfg)
    assert set(planned.outputs) == set(ORDER)  # pretrain is planned (the shipped ladder), never built
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {"dataset"}
    samples = planned.outputs["sample"]
    assert {role: len(s.requests) for role, s in samples.sets.items()} == {"wc": 3 * 40, "se": 40}
    assert [t.path.parent for t in planned.outputs["train"]["wc"]] == [tmp_path / "cache" / "train"]  # one rate, one finetune
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("[metrics]", r"stage 'sample' is not in `stages` .*120 of 120 wc samples(.|\n)*stage 'verify' is not in `stages`"),
        ("[train]", r"stage 'verify' is not in `stages` .*wc verdicts at"),
        ("[evaluate]", r"stage 'train' is not in `stages` .*the wc finetune at .*: add 'train' to stages"),
    ],
)
def test_a_selection_without_its_inputs_is_refused_before_anything_runs(tmp_path: Path, stages: str, message: str) -> None:
    cfg = compose_config(tmp_path, "experiment=toy_tiny", f"stages={stages}")
    with pytest.raises(MissingArtifact, match=message):
        runner.run(cfg)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "samples").exists()


def test_toy_pretrain_without_the_stage_needs_a_built_ladder(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, "experiment=toy_tiny", "toy.pretrain=true", "stages=[sample]")
    with pytest.raises(MissingArtifact, match=r"stage 'pretrain' is not in `stages` .*toy student at .*stages=\[pretrain\]"):
        runner.run(cfg)


def test_each_model_gets_its_own_vllm_engine_width(tmp_path: Path) -> None:
    cfg = compose_config(
        tmp_path, "experiment=toy_tiny", "stages=[dataset,sample]", "sampler.tensor_parallel_size=4",
        "model_pair.se.tensor_parallel_size=2",
    )
    sets = runner.plan(cfg, check_cache=False).outputs["sample"].sets
    assert (sets["wc"].tensor_parallel_size, sets["se"].tensor_parallel_size) == (None, 2)  # None: the sampler's 4
    assert compose_config(tmp_path, "model_pair=gemma2").model_pair.se.tensor_parallel_size == 2
