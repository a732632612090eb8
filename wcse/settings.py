"""From config to domain objects: the cross-field checks a schema cannot express, the run's
sample budget, and the trainer settings with the paper's schedule filled in.

The schema (what keys exist, their types and domains) is :mod:`wcse.config`, checked by
:mod:`wcse.schema`; this module is what the keys mean together. Errors (ConfigError) name the
offending keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from omegaconf import OmegaConf

from wcse import budget, schema
from wcse.errors import ConfigError
from wcse.models import TOY_PREFIX, split_revision
from wcse.roles import ROLES, SAMPLERS
from wcse.sampling import allocate
from wcse.sampling.backends import BACKENDS, request_params
from wcse.stages import ORDER
from wcse.train.arms import ARMS

NO_REFERENCE = ("oasst1",)  # dataset formats whose train problems carry no answer to check a sample against

VERIFY_METHODS = ("answer", "process", "judge", "none")


def validate(cfg: Any) -> None:
    """Every start-up check of a composed config; raises ConfigError naming the offending keys.

    First the schema (:func:`wcse.schema.check`: no undeclared key, every number in its domain),
    then what the keys mean together. The checks other modules own (prices, API settings, judge
    prompts, the budget, the schedule) raise ValueError; they become ConfigError here too.
    """
    try:
        schema.check(cfg)
        _cross_checks(cfg)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _cross_checks(cfg: Any) -> None:
    unknown = [s for s in cfg.stages if s not in ORDER]
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {unknown}; known: {list(ORDER)}")
    if cfg.rounds > 1 and (absent := [s for s in ("train", "evaluate") if s not in cfg.stages]):
        raise ConfigError(f"rounds={cfg.rounds}: each round samples with the last round's finetuned models; stages lack {absent}")
    if cfg.rounds > 1 and cfg.sampler.backend == "openai":
        raise ConfigError(f"rounds={cfg.rounds}: the next round samples with a finetuned model; sampler=openai serves fixed models")
    learning_rates(cfg)
    if cfg.setup.target not in ROLES:
        raise ConfigError(f"setup.target={cfg.setup.target!r}: must be one of {list(ROLES)}")
    bad_arms = [a for a in cfg.setup.arms if a not in ARMS]
    if bad_arms:
        raise ConfigError(f"setup.arms: unknown arm(s) {bad_arms}; known: {list(ARMS)}")
    if cfg.sampler.backend not in BACKENDS:
        raise ConfigError(f"sampler.backend={cfg.sampler.backend!r}: available backends are {list(BACKENDS)}")
    request_params(cfg.sampler)  # API settings that make no sense for the backend fail here, not mid-run
    for role in ROLES:
        spec = cfg.model_pair[role]
        budget.check_prices(
            f"model_pair.{role}",
            price_in_per_mtok=spec.price_in_per_mtok,
            price_out_per_mtok=spec.price_out_per_mtok,
            prices_date=spec.prices_date,
            prices_source=spec.prices_source,
        )
        if cfg.sampler.backend != "openai":  # an API model's id is the server's business
            check_model_location(f"model_pair.{role}.path", spec.path)
        if spec.target is not None:
            check_model_location(f"model_pair.{role}.target", spec.target)
    if (encoder := cfg.decontaminate.embedding.model) is not None:
        if encoder.startswith(TOY_PREFIX):
            raise ConfigError(f"decontaminate.embedding.model={encoder!r}: an encoder's folder or hub id, not a toy role")
        check_model_location("decontaminate.embedding.model", encoder)
    if cfg.logger.backend not in ("none", "wandb") or cfg.logger.mode not in ("offline", "online", "disabled"):
        raise ConfigError(
            f"logger: backend={cfg.logger.backend!r} must be none or wandb, mode={cfg.logger.mode!r} offline, online or disabled"
        )
    v = cfg.verifier
    if v.method not in VERIFY_METHODS:
        raise ConfigError(f"verifier.method={v.method!r}: must be one of {list(VERIFY_METHODS)}")
    if v.mode not in ("strict", "lenient"):
        raise ConfigError(f"verifier.mode={v.mode!r}: must be strict or lenient")
    if v.method == "judge" and v.judge is None:
        raise ConfigError("verifier.method=judge: label-free verification needs verifier.judge (e.g. verifier=judge)")
    if cfg.dataset.format in NO_REFERENCE and v.method not in ("none", "judge"):
        raise ConfigError(
            f"dataset={cfg.dataset.name} (format {cfg.dataset.format}) has no reference answers, so verifier.method={v.method}"
            " would keep nothing: use a label-free filter (verifier=none or verifier=judge)"
        )
    if v.judge is not None:
        from wcse.verify import judge  # its prompt files, not a model: cheap

        request_params(v.judge.sampler)
        if v.judge.sampler.backend != "openai":
            check_model_location("verifier.judge.path", v.judge.path)

        kind = judge.template(v.judge.prompt).kind
        wanted = "answer" if v.method == "judge" else "steps"
        if kind != wanted:
            raise ConfigError(
                f"verifier.judge.prompt={v.judge.prompt!r} is a {kind!r} prompt; verifier.method={v.method} "
                f"needs a {wanted!r} prompt ({'label-free decisions' if wanted == 'answer' else 'step-level FPR'})"
            )
    transfer = cfg.transfer
    if transfer is not None and transfer.format != "toy_arith":
        if transfer.test is None or (transfer.test.path is None and transfer.test.hub is None):
            raise ConfigError(
                f"transfer={transfer.name}: a transfer set is scored on its test split, and transfer.test has "
                "neither a local file (set paths.data_dir, or transfer.test.path) nor a hub id"
            )
    e = cfg.evaluator
    if any(k > e.samples for k in e.maj_ks):
        raise ConfigError(f"evaluator.maj_ks={list(e.maj_ks)}: each k must be in 1..evaluator.samples={e.samples}")
    if e.samples > 1 and e.temperature == 0:
        raise ConfigError(f"evaluator.samples={e.samples} at temperature 0 repeats one greedy answer; set evaluator.temperature")
    stray = [role for role in cfg.sampler.role_temperature if role not in SAMPLERS]
    if stray:
        raise ConfigError(f"sampler.role_temperature: unknown sampler role(s) {stray}; known: {list(SAMPLERS)}")
    if cfg.budget.allocation not in allocate.POLICIES:
        raise ConfigError(f"budget.allocation={cfg.budget.allocation!r}: must be one of {list(allocate.POLICIES)}")
    if cfg.budget.wc_spend not in budget.SPENDS:
        raise ConfigError(f"budget.wc_spend={cfg.budget.wc_spend!r}: must be one of {list(budget.SPENDS)}")
    shard = cfg.sampler.shard
    if shard.index >= shard.count:
        raise ConfigError(f"sampler.shard: index {shard.index} is not in [0, count={shard.count})")
    try:
        plan_budget(cfg)
    except ValueError as err:
        raise ConfigError(f"budget={cfg.budget.name} with model_pair={cfg.model_pair.name}: {err}") from None
    if any(stage in cfg.stages for stage in ("train", "evaluate")):
        train_settings(cfg)


def check_model_location(key: str, path: str) -> None:
    """A model path must be ``toy:<role>``, a local folder, or shaped like a hub id
    (``name``, ``owner/name``, optionally ``@revision``); anything else fails here in one line
    instead of as a page of hub errors when the model is loaded. Whether a hub id exists is not
    checked (that needs the network)."""
    if path.startswith(TOY_PREFIX):
        role = path[len(TOY_PREFIX) :]
        if role not in ROLES:
            raise ConfigError(f"{key}={path!r}: unknown toy role {role!r}; known: {list(ROLES)}")
        return
    local = Path(path).expanduser()
    if local.is_dir():
        return
    if local.exists():
        raise ConfigError(f"{key}={path!r}: a file, not a model folder")
    if not path.startswith(("/", "./", "../", "~")):
        try:
            validate_repo_id(split_revision(path)[0])
            return
        except HFValidationError:
            pass
    raise ConfigError(f"{key}={path!r}: no such folder, and not a hub id (name, owner/name or owner/name@revision)")


def learning_rates(cfg: Any) -> tuple[float | None, ...]:
    """The rates each arm is finetuned at: ``trainer.lr_grid`` in its order, or the one
    ``trainer.learning_rate`` (None: the schedule's); errors name the key."""
    grid = cfg.trainer.get("lr_grid")
    if grid is None:
        return (cfg.trainer.learning_rate,)
    rates = tuple(float(r) for r in grid)
    if not rates or any(r <= 0 for r in rates) or len(set(rates)) != len(rates):
        raise ConfigError(f"trainer.lr_grid={list(grid)}: give distinct positive learning rates (or null for one rate)")
    return rates


def train_settings(cfg: Any, learning_rate: float | None = None) -> dict[str, Any]:
    """The trainer group as TrainSpec kwargs for one finetune (at ``learning_rate``, a rate of
    :func:`learning_rates`; None: ``trainer.learning_rate``), with what it leaves unset taken
    from the target's paper schedule (model_pair.<target>.finetune) for this budget; errors
    name the keys. The grid itself is not a setting of a finetune, so a rate's finetune is the
    same cached artifact with or without a grid around it."""
    t = OmegaConf.to_container(cfg.trainer, resolve=True)
    t.pop("name")
    t.pop("lr_grid", None)
    if learning_rate is not None:
        t["learning_rate"] = learning_rate
    target = cfg.setup.target
    schedule = cfg.model_pair[target].finetune
    where = f"model_pair={cfg.model_pair.name}: {target}.finetune"

    def scheduled(key: str) -> Any:
        if schedule is None:
            raise ConfigError(f"trainer.{key} is unset and {where} (the paper's schedule) is not given; set trainer.{key}")
        if key == "max_steps":
            if cfg.budget.name not in schedule.steps:
                raise ConfigError(f"trainer.max_steps is unset and {where}.steps has no entry for budget={cfg.budget.name}")
            return schedule.steps[cfg.budget.name]
        return schedule[key]

    if t["max_steps"] is None:
        t["max_steps"] = scheduled("max_steps")
    if t["learning_rate"] is None:
        t["learning_rate"] = scheduled("learning_rate")
    global_batch = t.pop("global_batch_size")
    if t["gradient_accumulation_steps"] is None:
        global_batch = global_batch or scheduled("batch_size")
        per_step = t["per_device_batch_size"] * t["nprocs"] * t["nnodes"]  # every node's processes step together
        if global_batch % per_step:
            raise ConfigError(
                f"global batch {global_batch} is not a multiple of trainer.per_device_batch_size x trainer.nprocs"
                f" x trainer.nnodes = {per_step}"
            )
        t["gradient_accumulation_steps"] = global_batch // per_step
    elif global_batch is not None:
        raise ConfigError("trainer.global_batch_size needs trainer.gradient_accumulation_steps=null (it is derived)")
    return t


def plan_budget(cfg: Any) -> budget.SampleBudget:
    """The run's per-problem sample counts, from its budget and model pair."""
    b, pair = cfg.budget, cfg.model_pair
    return budget.plan(
        b.se_samples,
        mode=b.mode,
        wc_params=pair.wc.params,
        se_params=pair.se.params,
        wc_price=pair.wc.price_out_per_mtok,
        se_price=pair.se.price_out_per_mtok,
        scale=b.scale,
        rounding=b.rounding,
    )
