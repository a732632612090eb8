"""The shipped toy ladder loads, is what the config says, and reaches its recorded pass@1;
the pretraining recipe that produced it runs (on a tiny budget)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from tests.conftest import CONF, compose_config
from wcse import runner
from wcse.evaluate import Evaluator
from wcse.roles import ROLES
from wcse.toy import ladder

PAIR = OmegaConf.load(CONF / "model_pair" / "toy.yaml")
RECORDS = {role: json.loads((ladder.SHIPPED / role / "pretrain.json").read_text()) for role in ROLES}


@pytest.mark.parametrize("role", ROLES)
def test_shipped_checkpoint_matches_the_config(role) -> None:
    model = AutoModelForCausalLM.from_pretrained(ladder.SHIPPED / role)
    assert model.config.head_dim == 64  # vLLM's CPU backend rejects narrower heads
    assert sum(p.numel() for p in model.parameters()) == PAIR[role].params == RECORDS[role]["params"]
    record = RECORDS[role]
    assert record["command"].endswith("wcse.main stages=[pretrain] toy.publish=true")
    assert {"seed", "seconds", "train_seconds", "steps", "date", "test_pass@1"} <= set(record)


def test_the_ladder_is_real() -> None:
    """Issue #2's bar: SE 30-80%, at least 5 points above WC, WC above Student."""
    student, wc, se = (RECORDS[r]["test_pass@1"] for r in ROLES)
    assert 0.30 <= se <= 0.80
    assert se >= wc + 0.05
    assert wc > student
    assert PAIR.se.params / PAIR.wc.params == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("role", ROLES)
def test_shipped_checkpoint_reaches_its_recorded_pass_at_1(role, tmp_path: Path) -> None:
    cfg = compose_config(tmp_path)  # the default evaluator, on the default toy test split
    dataset = runner.plan(cfg, check_cache=False).outputs["dataset"].main
    result = Evaluator(cfg, dataset).score(str(ladder.SHIPPED / role), role, tmp_path, "test")
    assert result["n"] == 500
    assert result["pass@1"] == pytest.approx(RECORDS[role]["test_pass@1"], abs=0.006)  # 3 of 500


def test_pretraining_recipe_runs_and_is_used(tmp_path: Path) -> None:
    tiny = [f"toy.models.{r}.max_steps=2" for r in ROLES]
    cfg = compose_config(tmp_path, "toy.pretrain=true", "toy.corpus_size=64", "dataset.toy.n_test=8", "stages=[pretrain]", *tiny)
    models = runner.plan(cfg).outputs["pretrain"]
    summary = runner.run(cfg)
    for role in ROLES:
        path = models.ladder[role]
        assert path.is_relative_to(tmp_path / "cache" / "pretrain") and path.is_dir()  # rebuilt, not the shipped one
        assert models.path(role) == str(path)
        record = summary.pretrain[role]
        assert record["steps"] == 2 and record["params"] == PAIR[role].params
        AutoModelForCausalLM.from_pretrained(path)
