"""The typed schema behind the YAML in ``conf/``.

Each config group has a dataclass registered in Hydra's ConfigStore as ``<group>/schema``;
every YAML file of the group lists ``- schema`` first in its defaults, so Hydra validates its
keys and types when composing: a misspelt key or a string where a number belongs fails at
start-up with Hydra's message, not minutes into a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from wcse import budget
from wcse.train.arms import ARMS

STAGES = ("pretrain", "dataset", "sample", "verify", "metrics", "train", "evaluate", "report")
DEFAULT_STAGES = ["dataset", "sample", "verify", "metrics", "train", "evaluate", "report"]
ROLES = ("wc", "se", "student")
SAMPLER_BACKENDS = ("hf", "vllm", "openai")
VERIFY_METHODS = ("answer", "judge", "none")


@dataclass
class FinetuneSchedule:
    """The paper's SFT schedule for a model as the finetuning target (used where ``trainer`` leaves
    max_steps / learning_rate / global_batch_size unset)."""

    batch_size: int = 32  # global: sequences per optimizer step
    steps: dict[str, int] = field(default_factory=dict)  # budget name -> optimizer steps
    learning_rate: float = 1e-6


@dataclass
class ModelSpec:
    """One model of the pair. ``params`` drives compute matching; prices drive price matching."""

    name: str = MISSING  # short label used in cache keys and reports
    path: str = MISSING  # HF hub id, local folder, or ``toy:<role>`` for the embedded ladder
    params: float | None = None  # parameter count for compute matching (None: unknown, API model)
    target: str | None = None  # the model finetuned when this role is the target (default: path)
    price_in_per_mtok: float | None = None  # USD per 1M prompt tokens (API models)
    price_out_per_mtok: float | None = None  # USD per 1M generated tokens (API models)
    finetune: FinetuneSchedule | None = None  # its SFT schedule when it is the target


@dataclass
class ModelPairConfig:
    name: str = MISSING
    wc: ModelSpec = field(default_factory=ModelSpec)  # weaker-cheaper sampler
    se: ModelSpec = field(default_factory=ModelSpec)  # stronger-expensive sampler
    student: ModelSpec = field(default_factory=ModelSpec)  # the separate Student-LM (kd setup)
    prices_date: str | None = None  # when the prices were read
    prices_source: str | None = None


@dataclass
class SourceConfig:
    """Where a split comes from: a local JSONL file (preferred when set) or an HF hub dataset."""

    format: str | None = None  # overrides the dataset's format (mbpp trains on MBPP, tests on HumanEval)
    path: str | None = None
    hub: str | None = None
    hub_name: str | None = None
    hub_split: str | None = None


@dataclass
class ToyDataConfig:
    n_train: int = 1000
    n_validation: int = 200
    n_test: int = 500
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    variants: int = 0  # > 0: the test split is this many number-redrawn variants of each test problem


@dataclass
class DatasetConfig:
    name: str = MISSING
    format: str = MISSING  # toy_arith | gsm8k | math | mbpp | humaneval | functional_math
    train: SourceConfig | None = None
    validation: SourceConfig | None = None
    test: SourceConfig | None = None
    validation_from_train: int = 0  # carve a seeded validation split of this size from train
    max_train: int | None = None  # use only the first N training problems (small-data runs)
    max_test: int | None = None
    seed: int = 0
    prompt: str = MISSING  # prompt template id (wcse.data.prompts)
    toy: ToyDataConfig = field(default_factory=ToyDataConfig)


@dataclass
class BudgetConfig:
    name: str = MISSING
    mode: str = "compute"  # compute | price | number
    se_samples: int = 1  # samples per problem from SE; WC's count is derived, never typed in
    scale: float = 1.0  # multiplies WC's count (the paper's 0.15x Gemini arm)
    rounding: str = "nearest"  # nearest | floor | ceil (wcse.budget)


@dataclass
class SetupConfig:
    name: str = MISSING
    target: str = MISSING  # the model finetuned: student | wc | se
    arms: list[str] = field(default_factory=lambda: ["wc", "se"])  # SFT data arms (wcse.train.arms.ARMS)
    paradigm: dict[str, str] = field(default_factory=dict)  # arm -> paradigm, for the report
    mix_wc_fraction: float = 0.5  # the WC share of the ``mix`` arm (the paper's mixing ablation)


@dataclass
class ShardConfig:
    """Data-parallel sampling: job ``index`` of ``count`` samples a disjoint slice of problems."""

    index: int = 0
    count: int = 1


@dataclass
class SamplerConfig:
    backend: str = "hf"  # hf | vllm | openai
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 64
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    shard: ShardConfig = field(default_factory=ShardConfig)
    # vllm
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    enforce_eager: bool = False
    gpu_memory_utilization: float = 0.9
    # openai-compatible servers
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable only
    concurrency: int = 16
    timeout_s: float = 120.0
    max_retries: int = 8


@dataclass
class TrainerConfig:
    name: str = MISSING
    max_steps: int | None = 200  # None: the target's paper schedule for this budget
    per_device_batch_size: int = 16
    gradient_accumulation_steps: int | None = 1  # None: global_batch_size / (per_device_batch_size x nprocs)
    global_batch_size: int | None = None  # with gradient_accumulation_steps=None; None: the schedule's
    learning_rate: float | None = 1e-4  # None: the schedule's
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_length: int = 512
    seed: int = 0
    nprocs: int = 1
    launcher: str = "python"  # python | torchrun | deepspeed
    bf16: bool = False
    deepspeed: dict[str, Any] | None = None  # a DeepSpeed config; None trains without it
    format: str = "plain"  # plain | chat (the target's chat template around the prompt)
    packing: bool = False  # concatenate examples per batch, attention kept within each
    checkpoints: int = 0  # N evenly spaced checkpoints, scored on validation; the best is tested
    lora: dict[str, Any] | None = None  # peft LoraConfig kwargs (one-GPU finetuning)
    peak_tflops: float | None = None  # per device, for MFU (None: looked up from the GPU name)


@dataclass
class EvaluatorConfig:
    split: str = "test"
    temperature: float = 0.0  # 0: greedy pass@1
    samples: int = 1  # per problem; > 1 (at temperature > 0) gives sampled pass@1 and maj@k
    maj_ks: list[int] = field(default_factory=list)  # maj@k for these k (each <= samples)
    max_new_tokens: int = 128
    batch_size: int = 64
    limit: int | None = None  # evaluate only the first N problems
    baselines: list[str] = field(default_factory=lambda: ["student", "wc", "se"])  # untuned pass@1 too


@dataclass
class JudgeConfig:
    """An LLM judge: any model behind any sampler backend, reading a versioned judge prompt."""

    name: str = MISSING  # short label used in cache keys and reports
    path: str = MISSING  # local folder, hub id, or API model id (sampler.backend=openai)
    prompt: str = MISSING  # judge prompt id: "steps" (FPR) or "answer" (label-free); wcse/verify/judge_prompts/
    chat: bool = True  # render the judge model's chat template (instruct judges); False: raw text
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(temperature=0.0, max_new_tokens=1024))
    max_samples: int | None = 500  # per arm, for FPR: a seeded subset of the correct samples is judged


@dataclass
class VerifierConfig:
    name: str = MISSING
    method: str = "answer"  # answer: ground truth | judge: label-free, the judge decides | none: keep all
    mode: str = "strict"  # strict for filtering (the evaluator always grades lenient)
    workers: int | None = None  # verifier processes (None: the usable CPUs)
    timeout_s: float | None = None  # per sample (None: the format's default)
    chunk_size: int | None = None
    judge: JudgeConfig | None = None  # an "answer" judge decides (method=judge); a "steps" judge gives FPR
    diversity_rules: list[str] = field(default_factory=lambda: ["exact", "computation"])


@dataclass
class LoggerConfig:
    backend: str = "none"  # none | wandb
    project: str = "wcse"
    mode: str = "offline"  # wandb mode: offline needs no account; "online" syncs live
    group: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    cache_dir: str = MISSING  # content-keyed artifacts shared by every run and sweep job
    data_dir: str | None = None  # local copies of the benchmark files (else the HF hub)
    run_dir: str = MISSING  # this run's outputs (summary.json, logs)


@dataclass
class PretrainModelConfig:
    hidden_size: int = MISSING
    num_hidden_layers: int = MISSING
    intermediate_size: int = MISSING
    max_steps: int = MISSING
    learning_rate: float = 3e-3


@dataclass
class ToyConfig:
    """The embedded ladder: how it was (and can again be) pretrained."""

    pretrain: bool = False  # rebuild the ladder instead of loading the shipped checkpoints
    publish: bool = False  # copy a rebuilt ladder into the package (maintainers only)
    corpus_size: int = 60000
    batch_size: int = 64
    seed: int = 0
    models: dict[str, PretrainModelConfig] = field(default_factory=dict)


@dataclass
class Config:
    model_pair: ModelPairConfig = MISSING
    dataset: DatasetConfig = MISSING
    transfer: DatasetConfig | None = None  # an eval-only dataset (its test split) for generalisation
    budget: BudgetConfig = MISSING
    setup: SetupConfig = MISSING
    sampler: SamplerConfig = MISSING
    trainer: TrainerConfig = MISSING
    evaluator: EvaluatorConfig = MISSING
    verifier: VerifierConfig = MISSING
    logger: LoggerConfig = MISSING
    paths: PathsConfig = MISSING
    toy: ToyConfig = field(default_factory=ToyConfig)
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    seed: int = 0


GROUPS: dict[str, type] = {
    "model_pair": ModelPairConfig,
    "dataset": DatasetConfig,
    "budget": BudgetConfig,
    "setup": SetupConfig,
    "sampler": SamplerConfig,
    "trainer": TrainerConfig,
    "evaluator": EvaluatorConfig,
    "verifier": VerifierConfig,
    "logger": LoggerConfig,
    "paths": PathsConfig,
}


def register() -> None:
    """Register the schemas and the ``user_cache`` resolver (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schema in GROUPS.items():
        cs.store(group=group, name="schema", node=schema)
    if not OmegaConf.has_resolver("user_cache"):
        OmegaConf.register_new_resolver("user_cache", lambda app: platformdirs.user_cache_dir(app))
    if not OmegaConf.has_resolver("data_file"):
        OmegaConf.register_new_resolver("data_file", _data_file)


def _data_file(relative: str, *, _root_: Any) -> str | None:
    """``${data_file:gsm8k/train.jsonl}``: the local copy under ``paths.data_dir``, if one is set."""
    data_dir = _root_.paths.data_dir
    return None if data_dir is None else str(Path(data_dir) / relative)


def validate(cfg: Any) -> None:
    """Cross-field checks a schema cannot express; errors name the offending key."""
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"stages: unknown stage(s) {unknown}; known: {list(STAGES)}")
    if cfg.setup.target not in ROLES:
        raise ValueError(f"setup.target={cfg.setup.target!r}: must be one of {list(ROLES)}")
    bad_arms = [a for a in cfg.setup.arms if a not in ARMS]
    if bad_arms:
        raise ValueError(f"setup.arms: unknown arm(s) {bad_arms}; known: {list(ARMS)}")
    if not 0 <= cfg.setup.mix_wc_fraction <= 1:
        raise ValueError(f"setup.mix_wc_fraction={cfg.setup.mix_wc_fraction}: must be in [0, 1]")
    if cfg.sampler.backend not in SAMPLER_BACKENDS:
        raise ValueError(f"sampler.backend={cfg.sampler.backend!r}: available backends are {list(SAMPLER_BACKENDS)}")
    if cfg.logger.backend not in ("none", "wandb") or cfg.logger.mode not in ("offline", "online", "disabled"):
        raise ValueError(
            f"logger: backend={cfg.logger.backend!r} must be none or wandb, mode={cfg.logger.mode!r} offline, online or disabled"
        )
    v = cfg.verifier
    if v.method not in VERIFY_METHODS:
        raise ValueError(f"verifier.method={v.method!r}: must be one of {list(VERIFY_METHODS)}")
    if v.mode not in ("strict", "lenient"):
        raise ValueError(f"verifier.mode={v.mode!r}: must be strict or lenient")
    if v.method == "judge" and v.judge is None:
        raise ValueError("verifier.method=judge: label-free verification needs verifier.judge (e.g. verifier=judge)")
    if v.judge is not None:
        from wcse.verify import judge  # its prompt files, not a model: cheap

        kind = judge.template(v.judge.prompt).kind
        wanted = "answer" if v.method == "judge" else "steps"
        if kind != wanted:
            raise ValueError(
                f"verifier.judge.prompt={v.judge.prompt!r} is a {kind!r} prompt; verifier.method={v.method} "
                f"needs a {wanted!r} prompt ({'label-free decisions' if wanted == 'answer' else 'step-level FPR'})"
            )
    transfer = cfg.transfer
    if transfer is not None and transfer.format != "toy_arith":
        if transfer.test is None or (transfer.test.path is None and transfer.test.hub is None):
            raise ValueError(
                f"transfer={transfer.name}: a transfer set is scored on its test split, and transfer.test has "
                "neither a local file (set paths.data_dir, or transfer.test.path) nor a hub id"
            )
    e = cfg.evaluator
    if e.samples < 1 or any(not 1 <= k <= e.samples for k in e.maj_ks):
        raise ValueError(f"evaluator.maj_ks={list(e.maj_ks)}: each k must be in 1..evaluator.samples={e.samples}")
    if e.samples > 1 and e.temperature == 0:
        raise ValueError(f"evaluator.samples={e.samples} at temperature 0 repeats one greedy answer; set evaluator.temperature")
    shard = cfg.sampler.shard
    if not 0 <= shard.index < shard.count:
        raise ValueError(f"sampler.shard: index {shard.index} is not in [0, count={shard.count})")
    try:
        plan_budget(cfg)
    except ValueError as err:
        raise ValueError(f"budget={cfg.budget.name} with model_pair={cfg.model_pair.name}: {err}") from None
    if any(stage in cfg.stages for stage in ("train", "evaluate")):
        train_settings(cfg)


def train_settings(cfg: Any) -> dict[str, Any]:
    """The trainer group as TrainSpec kwargs, with what it leaves unset taken from the target's
    paper schedule (model_pair.<target>.finetune) for this budget; errors name the keys."""
    t = OmegaConf.to_container(cfg.trainer, resolve=True)
    t.pop("name")
    target = cfg.setup.target
    schedule = cfg.model_pair[target].finetune
    where = f"model_pair={cfg.model_pair.name}: {target}.finetune"

    def scheduled(key: str) -> Any:
        if schedule is None:
            raise ValueError(f"trainer.{key} is unset and {where} (the paper's schedule) is not given; set trainer.{key}")
        if key == "max_steps":
            if cfg.budget.name not in schedule.steps:
                raise ValueError(f"trainer.max_steps is unset and {where}.steps has no entry for budget={cfg.budget.name}")
            return schedule.steps[cfg.budget.name]
        return schedule[key]

    if t["max_steps"] is None:
        t["max_steps"] = scheduled("max_steps")
    if t["learning_rate"] is None:
        t["learning_rate"] = scheduled("learning_rate")
    global_batch = t.pop("global_batch_size")
    if t["gradient_accumulation_steps"] is None:
        global_batch = global_batch or scheduled("batch_size")
        per_step = t["per_device_batch_size"] * t["nprocs"]
        if global_batch % per_step:
            raise ValueError(
                f"global batch {global_batch} is not a multiple of trainer.per_device_batch_size x trainer.nprocs = {per_step}"
            )
        t["gradient_accumulation_steps"] = global_batch // per_step
    elif global_batch is not None:
        raise ValueError("trainer.global_batch_size needs trainer.gradient_accumulation_steps=null (it is derived)")
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
