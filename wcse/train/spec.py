"""What a training run is: the trainer settings (the ``trainer`` config group's schema) and the
run (:class:`TrainSpec`: those settings plus what to train on and where).

One dataclass declares every setting: Hydra validates the ``trainer`` group against
:class:`TrainerConfig`, and :class:`TrainSpec` extends it, so the parent process (Hydra, the
stages) and the worker processes (possibly several under ``torchrun``) agree on a run through
one plain JSON file without sharing Python state. This module imports nothing heavy, so the
config schema can use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from wcse.schema import bounded

FORMATS = ("plain", "chat")
LAUNCHERS = ("python", "torchrun", "deepspeed")
NODE_LAUNCHERS = ("srun", "local")  # how the agents of a multi-node run are started (wcse.train.launch)
SCHEDULED = ("max_steps", "learning_rate", "gradient_accumulation_steps")  # None: from the paper's schedule


@dataclass
class TrainerConfig:
    """How to finetune: the schema of ``conf/trainer/*.yaml``. ``None`` in a scheduled field
    means "the target's paper schedule for this budget" (:func:`wcse.settings.train_settings`)."""

    name: str = MISSING
    max_steps: int | None = bounded(200, ge=1)  # None: the target's paper schedule for this budget
    per_device_batch_size: int = bounded(16, ge=1)
    gradient_accumulation_steps: int | None = bounded(1, ge=1)  # None: global_batch_size / (per_device_batch_size x nprocs)
    global_batch_size: int | None = bounded(None, ge=1)  # with gradient_accumulation_steps=None; None: the schedule's
    learning_rate: float | None = bounded(1e-4, gt=0)  # None: the schedule's
    # several rates: each arm is finetuned at every one (replacing learning_rate) and the
    # evaluate stage picks the (rate, checkpoint) best on validation (wcse.settings.learning_rates)
    lr_grid: list[float] | None = None
    lr_scheduler: str = "cosine"
    warmup_ratio: float = bounded(0.05, ge=0, le=1)
    weight_decay: float = bounded(0.0, ge=0)
    max_grad_norm: float = bounded(1.0, ge=0)  # 0: no clipping
    max_length: int = bounded(512, ge=1)
    seed: int = bounded(0, ge=0)
    nprocs: int = bounded(1, ge=1)  # processes (GPUs) per node
    launcher: str = "python"  # python | torchrun | deepspeed
    nnodes: int = bounded(1, ge=1)  # nodes for one training: one launcher agent per node, nprocs processes each
    # srun: one agent on each of the first nnodes nodes of this SLURM job | local: every agent on
    # this machine, rendezvous on 127.0.0.1 (a rehearsal of a multi-node run: what the tests run)
    node_launcher: str = "srun"
    bf16: bool = False
    deepspeed: dict[str, Any] | None = None  # a DeepSpeed config; "auto" values are filled by HF; None: no DeepSpeed
    format: str = "plain"  # plain: the prompt text as is | chat: the prompt as a user turn of the target's chat template
    packing: bool = False  # concatenate a batch's examples into one row, attention kept within each
    checkpoints: int = bounded(0, ge=0)  # N evenly spaced checkpoints (HF weights), scored on validation; the best is tested
    lora: dict[str, Any] | None = None  # peft LoraConfig kwargs: train adapters, save merged weights
    peak_tflops: float | None = bounded(None, gt=0)  # per device, for MFU (None: looked up from the GPU name)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: memory for ~1/3 more compute
    logging_steps: int = bounded(10, ge=1)


@dataclass(kw_only=True)
class TrainSpec(TrainerConfig):
    """One finetuning (or pretraining) run: resolved settings plus exactly one of ``base_model`` /
    ``init_config``. Saved as JSON for the worker processes."""

    name: str = "run"
    output_dir: str
    data_path: str  # JSONL rows with "prompt" and "completion" strings
    base_model: str | None = None  # HF folder, hub id or pinned hub id (``id@revision``) to finetune
    init_config: dict[str, Any] | None = None  # LlamaConfig kwargs for a freshly initialised model
    tokenizer_path: str | None = None  # defaults to base_model
    # None: the model's safe default (wcse.models.attention_implementation: eager or flash_attention_2
    # for soft-capping Gemma2, transformers' default otherwise); or "eager", "sdpa", "flash_attention_2", ...
    attn_implementation: str | None = None

    def __post_init__(self) -> None:
        if (self.base_model is None) == (self.init_config is None):
            raise ValueError("TrainSpec needs exactly one of base_model / init_config")
        if self.tokenizer_path is None:
            if self.base_model is None:
                raise ValueError("TrainSpec with init_config needs tokenizer_path")
            self.tokenizer_path = self.base_model
        unset = [k for k in SCHEDULED if getattr(self, k) is None]
        if unset:
            raise ValueError(f"TrainSpec: {unset} unset; resolve the schedule first (wcse.settings.train_settings)")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {self.launcher!r}; known: {list(LAUNCHERS)}")
        if self.format not in FORMATS:
            raise ValueError(f"unknown SFT format {self.format!r}; known: {list(FORMATS)}")
        if self.launcher == "python" and self.nprocs != 1:
            raise ValueError("launcher 'python' runs one process; use 'torchrun' for nprocs > 1")
        if self.nnodes < 1 or self.nprocs < 1:
            raise ValueError(f"nnodes={self.nnodes}, nprocs={self.nprocs}: both must be >= 1")
        if self.nnodes > 1 and self.launcher == "python":
            raise ValueError(f"nnodes={self.nnodes}: several nodes need launcher 'torchrun' or 'deepspeed'")
        if self.node_launcher not in NODE_LAUNCHERS:
            raise ValueError(f"unknown node_launcher {self.node_launcher!r}; known: {list(NODE_LAUNCHERS)}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainSpec:
        return cls(**json.loads(Path(path).read_text()))

