"""Every config composes and validates against the schema; bad keys fail clearly."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from tests.conftest import CONF
from wcse.settings import NO_REFERENCE, plan_budget, train_settings, validate


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


GRID = list(itertools.product(options("model_pair"), options("dataset"), options("budget"), options("setup")))


def test_groups_have_the_presets_the_paper_needs() -> None:
    assert {"toy", "gemma2", "gemini", "qwen2.5"} <= set(options("model_pair"))
    assert {"toy_arith", "math", "gsm8k", "mbpp", "humaneval", "functional_math"} <= set(options("dataset"))
    assert {"low", "high", "number_matched", "price_matched"} <= set(options("budget"))
    assert {"kd", "self_improve", "w2s"} <= set(options("setup"))


@pytest.mark.parametrize("pair,dataset,budget_name,setup", GRID)
def test_every_combination_composes_and_validates(compose_cfg, pair, dataset, budget_name, setup) -> None:
    choice = (f"model_pair={pair}", f"dataset={dataset}", f"budget={budget_name}", f"setup={setup}")
    cfg = compose_cfg(*choice)
    if cfg.dataset.format in NO_REFERENCE:  # nothing to check answers against: only a label-free filter composes
        cfg = compose_cfg(*choice, "verifier=none")
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    b, models = cfg.budget, cfg.model_pair
    undefined = (b.mode == "compute" and models.wc.params is None) or (
        b.mode == "price" and models.wc.price_out_per_mtok is None
    )
    if undefined:  # e.g. compute-matching API models of unknown size: a clear error, not a guess
        with pytest.raises(ValueError, match=f"budget={budget_name} with model_pair={pair}"):
            validate(cfg)
        return
    validate(cfg)
    plan = plan_budget(cfg)
    assert plan.wc_samples >= plan.se_samples


@pytest.mark.parametrize(
    "overrides,se,wc",
    [
        (["model_pair=gemma2", "budget=low"], 1, 3),
        (["model_pair=gemma2", "budget=high"], 10, 30),
        (["model_pair=gemini", "budget=price_matched"], 1, 35),
        (["model_pair=gemini", "budget=price_matched", "budget.scale=0.15"], 1, 5),
        (["model_pair=toy", "budget=low"], 1, 3),
        (["model_pair=toy", "budget=high"], 10, 30),
    ],
)
def test_budget_presets_give_the_papers_counts(compose_cfg, overrides, se, wc) -> None:
    plan = plan_budget(compose_cfg(*overrides))
    assert (plan.se_samples, plan.wc_samples) == (se, wc)


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes(compose_cfg, name) -> None:
    cfg = compose_cfg(f"experiment={name}")
    validate(cfg)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize("group", ["trainer", "sampler", "evaluator", "verifier", "logger"])
def test_every_option_of_the_other_groups_composes(compose_cfg, group) -> None:
    for option in options(group):
        OmegaConf.to_container(compose_cfg(f"{group}={option}"), resolve=True, throw_on_missing=True)


def test_every_config_file_says_how_to_launch_it() -> None:
    for path in CONF.rglob("*.yaml"):
        if path.parent == CONF / "local":
            continue  # this cluster's own git-ignored settings (conf/local/README.md), not the project's
        head = path.read_text().splitlines()[:12]
        assert any("python -m wcse.main" in line for line in head), f"{path}: no launch line in its header comment"


def test_unknown_key_fails_with_hydras_message(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException, match="sampler.temprature"):
        compose_cfg("sampler.temprature=0.5")


def test_unknown_group_option_lists_the_options(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException, match="model_pair"):
        compose_cfg("model_pair=gpt5")


def test_wrong_type_fails_against_the_schema(compose_cfg) -> None:
    with pytest.raises((ConfigCompositionException, ValidationError, ConfigKeyError)):
        compose_cfg("budget.se_samples=many")


def test_cross_field_checks_name_the_key(compose_cfg) -> None:
    cfg = compose_cfg("stages=[dataset,sampel]")
    with pytest.raises(ValueError, match="sampel"):
        validate(cfg)
    cfg = compose_cfg("setup.target=teacher")
    with pytest.raises(ValueError, match="setup.target"):
        validate(cfg)
    cfg = compose_cfg("sampler.backend=tgi")
    with pytest.raises(ValueError, match="sampler.backend='tgi'"):
        validate(cfg)


def test_the_trainer_follows_the_papers_schedule_where_it_is_unset(compose_cfg) -> None:
    w2s = train_settings(compose_cfg("model_pair=gemma2", "trainer=zero3", "budget=high"))  # leaves them unset
    assert (w2s["max_steps"], w2s["learning_rate"]) == (6000, 1e-6)
    assert w2s["per_device_batch_size"] * w2s["nprocs"] * w2s["gradient_accumulation_steps"] == 32
    kd = compose_cfg("model_pair=gemma2", "trainer=zero3", "setup=kd")
    assert (train_settings(kd)["max_steps"], train_settings(kd)["gradient_accumulation_steps"]) == (2400, 1)
    # what the trainer sets wins; the toy trainer sets everything
    assert train_settings(compose_cfg("model_pair=gemma2", "trainer=zero3", "trainer.max_steps=7"))["max_steps"] == 7
    assert train_settings(compose_cfg())["max_steps"] == compose_cfg().trainer.max_steps
    # every node's processes step together: two nodes halve the accumulation, not double the batch
    two = train_settings(compose_cfg("model_pair=gemma2", "trainer=zero3", "budget=high", "trainer.nnodes=2"))
    assert two["per_device_batch_size"] * two["nprocs"] * two["nnodes"] * two["gradient_accumulation_steps"] == 32


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["setup=kd", "trainer.per_device_batch_size=4"], "not a multiple of trainer.per_device_batch_size x trainer.nprocs x trainer.nnodes = 32"),
        (["budget=number_matched"], "finetune.steps has no entry for budget=number_matched"),
        (["trainer.global_batch_size=64", "trainer.gradient_accumulation_steps=4"], "needs trainer.gradient_accumulation_steps=null"),
    ],
)
def test_schedule_errors_name_the_keys(compose_cfg, overrides, message) -> None:
    cfg = compose_cfg("model_pair=gemma2", "trainer=zero3", *overrides)
    with pytest.raises(ValueError, match=re.escape(message)):
        validate(cfg)
    qwen = compose_cfg("model_pair=qwen2.5", "trainer.max_steps=null")
    with pytest.raises(ValueError, match="trainer.max_steps is unset and model_pair=qwen2.5: se.finetune"):
        validate(qwen)


@pytest.mark.parametrize("trainer", ["zero2", "zero3", "zero3_offload", "lora"])
def test_every_trainer_runs_on_the_toy_pair_with_its_own_schedule(compose_cfg, trainer) -> None:
    cfg = compose_cfg(f"trainer={trainer}")
    validate(cfg)
    settings = train_settings(cfg)
    assert (settings["max_steps"], settings["learning_rate"]) == (40, 1e-4)



def _launcher(*overrides: str) -> dict:
    """hydra.launcher as the multirun would instantiate it (interpolations resolved)."""
    cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # ${hydra.sweep.dir} in submitit_folder
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_the_submitit_launchers_compose(compose_cfg) -> None:
    compose_cfg()  # Hydra initialised on conf/
    local = _launcher("hydra/launcher=local")
    assert local["_target_"].endswith("submitit_launcher.LocalLauncher") and local["gpus_per_node"] == 0
    slurm = _launcher("hydra/launcher=slurm", "trainer=zero3", "trainer.nnodes=2", "hydra.launcher.partition=gpu")
    assert slurm["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert slurm["partition"] == "gpu" and slurm["gpus_per_node"] == 8
    assert slurm["additional_parameters"] == {"nodes": 2}  # the job holds the training's nodes
    assert slurm["nodes"] == 1 and slurm["srun_args"] == ["--nodes=1", "--ntasks=1"]  # one pipeline task


def test_the_cluster_file_is_read_when_present(tmp_path) -> None:
    """conf/local/slurm.yaml (git-ignored) overrides the launcher's defaults, the command line
    overrides both; without it (a fresh clone) everything composes as before."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf, ignore=lambda folder, names: [n for n in names if n.endswith(".yaml")] if Path(folder).name == "local" else [])
    (conf / "local" / "slurm.yaml").write_text("partition: a100\naccount: my-lab\nsetup: [export WCSE_CACHE_DIR=/shared/wcse]\n")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cluster = _launcher("hydra/launcher=slurm")
            assert (cluster["partition"], cluster["account"]) == ("a100", "my-lab")
            assert cluster["setup"] == ["export WCSE_CACHE_DIR=/shared/wcse"] and cluster["timeout_min"] == 2880
            assert _launcher("hydra/launcher=slurm", "hydra.launcher.partition=h100")["partition"] == "h100"
            (conf / "local" / "slurm.yaml").unlink()
            assert _launcher("hydra/launcher=slurm")["partition"] is None
            assert _launcher()["_target_"].endswith("BasicLauncher")
    finally:
        GlobalHydra.instance().clear()  # the next compose_config initialises on conf/ again
