"""``python -m wcse.train.worker SPEC.json``: one training process.

Training runs outside the caller's process so DeepSpeed's global state (comm groups, the live
config that makes ``from_pretrained`` partition weights) dies with it, and so the same entry
point serves ``torchrun`` launches of several processes. Artifacts: ``output_dir/model``
(safetensors + tokenizer) and ``output_dir/metrics.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)

from wcse.train.sft import IGNORE_INDEX, TrainSpec, encode_example, make_collator

log = logging.getLogger("wcse.train.worker")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_process_env(spec: TrainSpec) -> None:
    """Environment DeepSpeed needs that a plain ``python`` launch does not provide.

    Compiled ops (the CPU shared-memory comm op takes ~60 s to build) go to a fixed folder so
    they are built once per machine; torchrun already sets the rendezvous variables.
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache/wcse/torch_extensions"))
    if spec.deepspeed is not None and "RANK" not in os.environ:
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1"
        )


def _build_model(spec: TrainSpec) -> PreTrainedModel:
    if spec.base_model is not None:
        return AutoModelForCausalLM.from_pretrained(spec.base_model)
    torch.manual_seed(spec.seed)  # the fresh model's weights follow the run's seed
    return LlamaForCausalLM(LlamaConfig(**spec.init_config))


def _deepspeed_config(spec: TrainSpec) -> dict[str, Any] | None:
    """The spec's DeepSpeed config, made to save whole weights under ZeRO-3.

    Without ``stage3_gather_16bit_weights_on_model_save``, ZeRO-3's ``save_model`` writes a
    sharded DeepSpeed checkpoint (for ``zero_to_fp32.py``) instead of weights ``from_pretrained`` reads.
    """
    if spec.deepspeed is None:
        return None
    config = json.loads(json.dumps(spec.deepspeed))
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        zero.setdefault("stage3_gather_16bit_weights_on_model_save", True)
    return config


def _training_args(spec: TrainSpec) -> TrainingArguments:
    return TrainingArguments(
        output_dir=spec.output_dir,
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.per_device_batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.lr_scheduler,
        # transformers 5 has no warmup_ratio; a float warmup_steps < 1 would be read as a ratio
        # but 1.0 as one step, so pass the count.
        warmup_steps=math.ceil(spec.max_steps * spec.warmup_ratio),
        weight_decay=spec.weight_decay,
        max_grad_norm=spec.max_grad_norm,
        seed=spec.seed,
        logging_steps=spec.logging_steps,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        # Without an "optimizer" section the Trainer builds torch AdamW itself and sets
        # zero_allow_untested_optimizer, so no DeepSpeed optimizer op is compiled.
        deepspeed=_deepspeed_config(spec),
        bf16=spec.bf16,
        dataloader_num_workers=0,
        disable_tqdm=False,
        include_num_input_tokens_seen="non_padding",
    )


def _load_dataset(spec: TrainSpec, tokenizer: Any) -> datasets.Dataset:
    raw = datasets.load_dataset("json", data_files=spec.data_path, split="train")
    encoded = raw.map(
        lambda row: encode_example(tokenizer, row["prompt"], row["completion"], spec.max_length),
        remove_columns=raw.column_names,
    )
    # Rows whose prompt fills max_length have no supervised token and would only add NaN losses.
    kept = encoded.filter(lambda row: any(label != IGNORE_INDEX for label in row["labels"]))
    if len(kept) < len(encoded):
        log.warning("dropped %d of %d examples with no completion token within max_length=%d",
                    len(encoded) - len(kept), len(encoded), spec.max_length)
    return kept


def train(spec: TrainSpec) -> dict[str, Any] | None:
    """Train, save the model, and return the metrics (on rank 0; ``None`` elsewhere)."""
    _set_process_env(spec)
    args = _training_args(spec)  # before the model: with ZeRO-3 it makes from_pretrained partition
    if spec.deepspeed is not None:
        # With use_cpu, accelerate starts torch.distributed but not deepspeed.comm, so ZeRO-3's
        # zero.Init in from_pretrained would see world size 1 and reject the batch size.
        import deepspeed  # only DeepSpeed runs pay for the import

        deepspeed.init_distributed()
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_path)
    model = _build_model(spec)
    dataset = _load_dataset(spec, tokenizer)
    log.info("training %s on %d examples from %s for %d steps (world size %d, deepspeed %s)",
             spec.base_model or "a fresh model", len(dataset), spec.data_path, spec.max_steps,
             args.world_size, "on" if spec.deepspeed else "off")

    trainer = Trainer(
        model=model, args=args, train_dataset=dataset, data_collator=make_collator(tokenizer),
        processing_class=tokenizer,
    )
    result = trainer.train()
    train_seconds = result.metrics["train_runtime"]  # the loop only, without DeepSpeed engine setup

    model_dir = Path(spec.output_dir) / "model"
    trainer.save_model(str(model_dir))  # every rank: ZeRO-3 gathers the weights collectively
    if not trainer.is_world_process_zero():
        return None
    tokens = trainer.state.num_input_tokens_seen
    history = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    metrics = {
        "train_loss": result.training_loss,
        "loss_history": history,
        "steps": trainer.state.global_step,
        "train_seconds": train_seconds,
        "train_tokens": tokens,
        "tokens_per_second": tokens / train_seconds,
        "n_examples": len(dataset),
        "world_size": args.world_size,
    }
    metrics_path = Path(spec.output_dir) / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2))
    log.info("saved model to %s and metrics to %s (mean train loss %.4f, %.0f tokens/s)",
             model_dir, metrics_path, metrics["train_loss"], metrics["tokens_per_second"])
    return metrics


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m wcse.train.worker SPEC.json")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    train(TrainSpec.load(argv[0]))


if __name__ == "__main__":
    main()
