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

from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, PreTrainedTokenizerBase

IGNORE_INDEX = -100  # the label the HF causal-LM loss skips
FORMATS = ("plain", "chat")
LAUNCHERS = ("python", "torchrun", "deepspeed")


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
    format: str = "plain"  # "plain": prompt text as is; "chat": the prompt as a user turn of the chat template
    packing: bool = False  # concatenate examples into one row per batch (no padding), boundaries kept
    checkpoints: int = 0  # save this many evenly spaced checkpoints (HF weights) for selection
    lora: dict[str, Any] | None = None  # peft LoraConfig kwargs: train adapters, save merged weights
    peak_tflops: float | None = None  # per device, for MFU; None: looked up from the GPU's name

    def __post_init__(self) -> None:
        if (self.base_model is None) == (self.init_config is None):
            raise ValueError("TrainSpec needs exactly one of base_model / init_config")
        if self.tokenizer_path is None:
            if self.base_model is None:
                raise ValueError("TrainSpec with init_config needs tokenizer_path")
            self.tokenizer_path = self.base_model
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {self.launcher!r}; known: {list(LAUNCHERS)}")
        if self.format not in FORMATS:
            raise ValueError(f"unknown SFT format {self.format!r}; known: {list(FORMATS)}")
        if self.launcher == "python" and self.nprocs != 1:
            raise ValueError("launcher 'python' runs one process; use 'torchrun' for nprocs > 1")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainSpec:
        return cls(**json.loads(Path(path).read_text()))


def encode_example(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, max_length: int, *, chat: bool = False
) -> dict[str, list[int]]:
    """Token ids with a completion-only loss mask.

    Prompt and completion are tokenized separately and concatenated, so the boundary is exact;
    matching a response template at token level breaks when the template tokenizes differently
    in context (TRL issue #1920). The prompt (with the BOS the tokenizer adds, or with ``chat``
    the whole chat-template turn up to where the assistant starts) gets ``IGNORE_INDEX``; the
    completion and a final EOS are learned, so the model learns to stop.
    """
    if chat:
        prompt_ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        completion = completion.lstrip()  # the template already separates the turns
    else:
        prompt_ids = tokenizer(prompt).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    input_ids = (list(prompt_ids) + completion_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def make_collator(
    tokenizer: PreTrainedTokenizerBase, *, packing: bool = False
) -> DataCollatorForSeq2Seq | DataCollatorWithFlattening:
    """Batches for the Trainer: padded rows, or with ``packing`` one row of concatenated examples.

    Packed rows carry ``position_ids`` restarting at 0 for each example; transformers builds a
    block-diagonal causal mask from them (sdpa, eager and flash attention), so no example attends
    to another, and the first label of each example is ``IGNORE_INDEX`` so none is predicted from
    its neighbour. The loss is the mean over completion tokens either way.

    Padding goes on the right: generation wants the tokenizer to pad on the left, but training
    numbers positions by index, so right padding keeps every sequence starting at position 0. A
    shallow copy changes the side without touching the tokenizer that is saved with the model.
    """
    if packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    right = copy.copy(tokenizer)
    right.padding_side = "right"
    return DataCollatorForSeq2Seq(right, label_pad_token_id=IGNORE_INDEX, padding=True)
