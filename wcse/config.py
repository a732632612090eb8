"""The typed schema behind the YAML in ``conf/``.

Each config group has a dataclass registered in Hydra's ConfigStore as ``<group>/schema``;
every YAML file of the group lists ``- schema`` first in its defaults, so Hydra validates its
keys and types when composing: a misspelt key or a string where a number belongs fails at
start-up with Hydra's message, not minutes into a run. Each numeric field declares its domain
beside it (``bounded(64, ge=1)``); :func:`wcse.schema.check` holds the composed config to those
domains and rejects keys the schema lacks, including those added with ``+key=value``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from wcse.schema import bounded
from wcse.stages import DEFAULT
from wcse.toy.world import LEVELS
from wcse.train.spec import TrainerConfig


@dataclass
class FinetuneSchedule:
    """The paper's SFT schedule for a model as the finetuning target (used where ``trainer`` leaves
    max_steps / learning_rate / global_batch_size unset)."""

    batch_size: int = bounded(32, ge=1)  # global: sequences per optimizer step
    steps: dict[str, int] = bounded(default_factory=dict, ge=1)  # budget name -> optimizer steps
    learning_rate: float = bounded(1e-6, gt=0)


@dataclass
class ModelSpec:
    """One model of the pair. ``params`` drives compute matching; prices drive price matching."""

    name: str = MISSING  # short label used in cache keys and reports
    path: str = MISSING  # HF hub id, local folder, or ``toy:<role>`` for the embedded ladder
    params: float | None = bounded(None, gt=0)  # parameter count for compute matching (None: unknown, API model)
    target: str | None = None  # the model finetuned when this role is the target (default: path)
    price_in_per_mtok: float | None = bounded(None, ge=0)  # USD per 1M prompt tokens (API models)
    price_out_per_mtok: float | None = bounded(None, ge=0)  # USD per 1M generated tokens (API models)
    prices_date: str | None = None  # when both prices were read (required with a price)
    prices_source: str | None = None  # where they were read (required with a price)
    finetune: FinetuneSchedule | None = None  # its SFT schedule when it is the target
    attn_implementation: str | None = None  # None: the model's safe default (wcse.models.attention_implementation)
    tensor_parallel_size: int | None = bounded(None, ge=1)  # GPUs of its vLLM engine (None: sampler.tensor_parallel_size)


@dataclass
class ModelPairConfig:
    name: str = MISSING
    wc: ModelSpec = field(default_factory=ModelSpec)  # weaker-cheaper sampler
    se: ModelSpec = field(default_factory=ModelSpec)  # stronger-expensive sampler
    student: ModelSpec = field(default_factory=ModelSpec)  # the separate Student-LM (kd setup)


@dataclass
class SourceConfig:
    """Where a split comes from: a local JSONL file (preferred when set) or an HF hub dataset."""

    format: str | None = None  # overrides the dataset's format (mbpp trains on MBPP, tests on HumanEval)
    path: str | None = None
    hub: str | None = None
    hub_name: str | None = None
    hub_split: str | None = None
    exclude: list[str] = field(default_factory=list)  # splits whose problems are removed from this one first
    size: int | None = bounded(None, ge=1)  # a seeded subset of this many problems (after ``exclude``)


@dataclass
class ToyDataConfig:
    n_train: int = bounded(1000, ge=0)  # 0: an evaluation-only dataset (toy_arith_variants)
    n_validation: int = bounded(200, ge=0)
    n_test: int = bounded(500, ge=1)
    levels: list[int] = bounded(default_factory=lambda: list(LEVELS), ge=min(LEVELS), le=max(LEVELS))
    variants: int = bounded(0, ge=0)  # > 0: the test split is this many number-redrawn variants of each test problem


@dataclass
class DatasetConfig:
    name: str = MISSING
    format: str = MISSING  # toy_arith | gsm8k | math | mbpp | humaneval | functional_math
    train: SourceConfig | None = None
    validation: SourceConfig | None = None
    test: SourceConfig | None = None
    max_train: int | None = bounded(None, ge=1)  # use only the first N training problems (small-data runs)
    max_test: int | None = bounded(None, ge=1)
    seed: int = bounded(0, ge=0)
    prompt: str = MISSING  # prompt template id (wcse.data.prompts)
    toy: ToyDataConfig = field(default_factory=ToyDataConfig)


@dataclass
class BudgetConfig:
    name: str = MISSING
    mode: str = "compute"  # compute | price | number
    se_samples: int = bounded(1, ge=1)  # samples per problem from SE; WC's count is derived, never typed in
    scale: float = bounded(1.0, gt=0)  # multiplies WC's count (the paper's 0.15x Gemini arm)
    rounding: str = "nearest"  # nearest | floor | ceil (wcse.budget)
    problems: int | None = bounded(None, ge=1)  # SE samples the first N train problems (None: all of them)
    allocation: str = "uniform"  # uniform | stop_at_k | difficulty: adaptive over problems (wcse.sampling.allocate)
    stop_k: int = bounded(1, ge=1)  # stop_at_k: correct samples that retire a problem
    probe_samples: int = bounded(1, ge=1)  # difficulty: samples of every problem before the proportional share
    max_per_problem: int | None = bounded(None, ge=1)  # adaptive: the most samples of one problem (None: 4x the uniform count)
    wc_spend: str = "samples"  # samples: WC's extra budget buys samples per problem | questions: more problems (wcse.budget.spread)


@dataclass
class SetupConfig:
    name: str = MISSING
    label: str = MISSING  # the paper's name for the finetuned model (its Table 1): Student-LM, WC-LM, SE-LM
    target: str = MISSING  # the model finetuned: student | wc | se
    arms: list[str] = field(default_factory=lambda: ["wc", "se"])  # SFT data arms (wcse.train.arms.ARMS)
    paradigm: dict[str, str] = field(default_factory=dict)  # arm -> paradigm, for the report
    mix_wc_fraction: float = bounded(0.5, ge=0, le=1)  # the WC share of the ``mix`` arm (the paper's mixing ablation)
    mix_budget_wc_share: float = bounded(0.5, ge=0, le=1)  # the share of sampling compute the ``mix_budget`` arm spends on WC


@dataclass
class ShardConfig:
    """Data-parallel sampling: job ``index`` of ``count`` samples a disjoint slice of problems."""

    index: int = bounded(0, ge=0)
    count: int = bounded(1, ge=1)


@dataclass
class SamplerConfig:
    backend: str = "hf"  # hf | vllm | openai
    temperature: float = bounded(0.7, ge=0)
    role_temperature: dict[str, float] = bounded(default_factory=dict, ge=0)  # role -> its own temperature: +sampler.role_temperature.se=1.0
    top_p: float = bounded(1.0, gt=0, le=1)
    max_new_tokens: int = bounded(128, ge=1)
    batch_size: int = bounded(64, ge=1)
    seed: int = bounded(0, ge=0)
    dtype: str = "float32"
    device: str = "auto"
    shard: ShardConfig = field(default_factory=ShardConfig)
    # vllm
    tensor_parallel_size: int = bounded(1, ge=1)
    max_model_len: int | None = bounded(None, ge=1)
    enforce_eager: bool = False
    gpu_memory_utilization: float = bounded(0.9, gt=0, le=1)
    # openai-compatible servers
    base_url: str | None = None
    # (api, n_per_request, system_prompt: wcse.sampling.backends.request_params; hf and vllm take raw text)
    api: str = "chat"  # chat (/v1/chat/completions: hosted models) | completions (/v1/completions: base models)
    n_per_request: int = bounded(1, ge=1)  # > 1: up to n samples of a prompt per call (where honoured; budgets no longer nest)
    system_prompt: str | None = None  # a system turn before the prompt (api=chat)
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable only
    concurrency: int = bounded(16, ge=1)
    timeout_s: float = bounded(120.0, gt=0)
    max_retries: int = bounded(8, ge=0)


@dataclass
class EvaluatorConfig:
    split: str = "test"
    temperature: float = bounded(0.0, ge=0)  # 0: greedy pass@1
    samples: int = bounded(1, ge=1)  # per problem; > 1 (at temperature > 0) gives sampled pass@1 and maj@k
    maj_ks: list[int] = bounded(default_factory=list, ge=1)  # maj@k for these k (each <= samples)
    max_new_tokens: int = bounded(128, ge=1)
    batch_size: int = bounded(64, ge=1)
    limit: int | None = bounded(None, ge=1)  # evaluate only the first N problems
    baselines: list[str] = field(default_factory=lambda: ["student", "wc", "se"])  # untuned pass@1 too


@dataclass
class JudgeConfig:
    """An LLM judge: any model behind any sampler backend, reading a versioned judge prompt."""

    name: str = MISSING  # short label used in cache keys and reports
    path: str = MISSING  # local folder, hub id, or API model id (sampler.backend=openai)
    prompt: str = MISSING  # judge prompt id: "steps" (FPR) or "answer" (label-free); wcse/verify/judge_prompts/
    chat: bool = True  # render the judge model's chat template (instruct judges); False: raw text
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig(temperature=0.0, max_new_tokens=1024))
    max_samples: int | None = bounded(500, ge=1)  # per arm, for FPR: a seeded subset of the correct samples is judged


@dataclass
class VerifierConfig:
    name: str = MISSING
    method: str = "answer"  # answer: ground truth | judge: label-free, the judge decides | none: keep all
    mode: str = "strict"  # strict for filtering (the evaluator always grades lenient)
    workers: int | None = bounded(None, ge=1)  # verifier processes (None: the usable CPUs)
    timeout_s: float | None = bounded(None, gt=0)  # per sample (None: the format's default)
    chunk_size: int | None = bounded(None, ge=1)
    judge: JudgeConfig | None = None  # an "answer" judge decides (method=judge); a "steps" judge gives FPR
    diversity_rules: list[str] = field(default_factory=lambda: ["exact", "computation"])
    keep_truncated: bool = False  # keep samples cut by max_new_tokens (finish_reason "length") as SFT data


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
    # How long a run waits for a lock another process holds (a cache artifact being built, a sample
    # store being written) before it gives up, naming the holder; null: wait for as long as it takes.
    # A legitimate wait lasts as long as the holder's build (a training can take hours).
    lock_timeout_s: float | None = bounded(6 * 3600.0, gt=0)


@dataclass
class PretrainModelConfig:
    hidden_size: int = bounded(MISSING, ge=1)
    num_hidden_layers: int = bounded(MISSING, ge=1)
    intermediate_size: int = bounded(MISSING, ge=1)
    max_steps: int = bounded(MISSING, ge=1)
    learning_rate: float = bounded(3e-3, gt=0)


@dataclass
class ToyConfig:
    """The embedded ladder: how it was (and can again be) pretrained."""

    pretrain: bool = False  # rebuild the ladder instead of loading the shipped checkpoints
    publish: bool = False  # copy a rebuilt ladder into the package (maintainers only)
    corpus_size: int = bounded(60000, ge=1)
    batch_size: int = bounded(64, ge=1)
    seed: int = bounded(0, ge=0)
    models: dict[str, PretrainModelConfig] = field(default_factory=dict)


@dataclass
class EmbeddingConfig:
    """The optional second decontamination check: cosine similarity of encoder embeddings
    (wcse.data.near_duplicates), which sees rephrased copies an n-gram misses."""

    model: str | None = None  # an AutoModel folder or hub id (e.g. sentence-transformers/all-MiniLM-L6-v2); None: n-gram only
    threshold: float = bounded(0.9, ge=-1, le=1)  # flag at this cosine similarity or above (the model's scale: calibrate it)
    batch_size: int = bounded(32, ge=1)
    max_length: int = bounded(256, ge=8)  # tokens per text


@dataclass
class DecontaminateConfig:
    """Word n-gram overlap of train problems, few-shot exemplars and kept samples with every
    evaluation split of the run (wcse.data.decontaminate)."""

    enabled: bool = True
    ngram: int = bounded(13, ge=1)  # GPT-3's decontamination n (open-r1 uses 8)
    min_coverage: float = bounded(0.0, ge=0, le=1)  # flag an item when this share of its words is in shared n-grams (0: any one)
    drop: bool = True  # drop what overlaps (false: count and report it, train on it anyway)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)


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
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)
    stages: list[str] = field(default_factory=lambda: list(DEFAULT))  # wcse.stages: the graph
    seed: int = bounded(0, ge=0)
    rounds: int = bounded(1, ge=1)  # > 1: iterated sample -> filter -> finetune rounds (wcse.rounds)


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
