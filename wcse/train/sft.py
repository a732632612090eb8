"""What a training run is (:class:`TrainSpec`) and how examples become supervised tokens.

The spec is plain JSON so that the parent process (Hydra, the pipeline) and the worker process
(possibly one of several under ``torchrun``) agree on a run without sharing Python state.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

IGNORE_INDEX = -100  # the label the HF causal-LM loss skips


@dataclass
class TrainSpec:
    """One finetuning (or pretraining) run; exactly one of ``base_model`` / ``init_config``."""

    output_dir: str
    data_path: str  # JSONL rows with "prompt" and "completion" strings
    max_steps: int
    per_device_batch_size: int
    learning_rate: float
    base_model: str | None = None  # HF folder or hub id to finetune
    init_config: dict[str, Any] | None = None  # LlamaConfig kwargs for a freshly initialised model
    tokenizer_path: str | None = None  # defaults to base_model
    gradient_accumulation_steps: int = 1
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    max_length: int = 512
    deepspeed: dict[str, Any] | None = None  # a DeepSpeed config; "auto" values are filled by HF
    nprocs: int = 1
    launcher: str = "python"  # "python" (one process) or "torchrun"
    bf16: bool = False
    logging_steps: int = 10

    def __post_init__(self) -> None:
        if (self.base_model is None) == (self.init_config is None):
            raise ValueError("TrainSpec needs exactly one of base_model / init_config")
        if self.tokenizer_path is None:
            if self.base_model is None:
                raise ValueError("TrainSpec with init_config needs tokenizer_path")
            self.tokenizer_path = self.base_model
        if self.launcher not in ("python", "torchrun"):
            raise ValueError(f"unknown launcher {self.launcher!r}")
        if self.launcher == "python" and self.nprocs != 1:
            raise ValueError("launcher 'python' runs one process; use 'torchrun' for nprocs > 1")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainSpec:
        return cls(**json.loads(Path(path).read_text()))


def encode_example(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, max_length: int
) -> dict[str, list[int]]:
    """Token ids with a completion-only loss mask.

    Prompt and completion are tokenized separately and concatenated, so the boundary is exact;
    matching a response template at token level breaks when the template tokenizes differently
    in context (TRL issue #1920). The prompt (with the BOS the tokenizer adds) gets
    ``IGNORE_INDEX``; the completion and a final EOS are learned, so the model learns to stop.
    """
    prompt_ids = tokenizer(prompt).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def make_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorForSeq2Seq:
    """Pads a batch on the right with labels ``IGNORE_INDEX``.

    Generation wants the tokenizer to pad on the left; training pads on the right because the
    model numbers positions by index, so right padding keeps every sequence starting at
    position 0 as generation (which derives positions from the mask) sees it. A shallow copy
    changes the side without touching the tokenizer that is saved with the model.
    """
    right = copy.copy(tokenizer)
    right.padding_side = "right"
    return DataCollatorForSeq2Seq(right, label_pad_token_id=IGNORE_INDEX, padding=True)
