"""``python -m wcse.train.worker SPEC.json``: one training process.

Training runs outside the caller's process so DeepSpeed's global state (comm groups, the live
config that makes ``from_pretrained`` partition weights) dies with it, and so the same entry
point serves ``torchrun`` and ``deepspeed`` launches of several processes. Artifacts:
``output_dir/model`` (safetensors + tokenizer), ``output_dir/metrics.json`` and, with
``spec.checkpoints = N``, ``output_dir/checkpoints/checkpoint-<step>`` at N evenly spaced steps.

The HF Trainer rather than TRL's SFTTrainer: :func:`encode_example` already gives what SFTTrainer
adds (completion-only loss, chat format, packing) without its response-template matching
pitfalls, and one library fewer sits between us and DeepSpeed.

Checkpoints hold weights ``from_pretrained`` loads and the tokenizer (LoRA: merged, in
``checkpoint-<step>/merged``), for choosing the best on validation; metrics.json lists them. The newest also holds the resumable state (optimizer or DeepSpeed engine,
scheduler, RNG, ``trainer_state.json``), dropped from the older ones as each new one is complete
and from all when the run ends, so disk stays bounded. A run started on an ``output_dir`` with
such a checkpoint (an interrupted run) resumes from it: the checkpoint steps are the resume
points, and a run with ``checkpoints = 0`` starts over.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import math
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from wcse import models
from wcse.hardware import peak_bf16_tflops
from wcse.train.launch import free_port
from wcse.train.sft import IGNORE_INDEX, encode_example, make_collator
from wcse.train.spec import TrainSpec

log = logging.getLogger("wcse.train.worker")

CHECKPOINTS = "checkpoints"  # the Trainer's output_dir, under the spec's
MERGED = "merged"  # a LoRA checkpoint's whole weights, beside the Trainer's adapter
# What only resuming reads. trainer_state.json is written last and deleted first, so its presence
# marks a complete checkpoint that can be resumed from.
RESUME_STATE = (
    "trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth",
    "latest", "global_step*", "zero_to_*.py", "adapter_model.safetensors", "adapter_config.json",
)


def _set_process_env(spec: TrainSpec) -> None:
    """Environment DeepSpeed needs that a plain ``python`` launch does not provide.

    Compiled ops (the CPU shared-memory comm op takes ~60 s to build) go to a fixed folder so
    they are built once per machine; torchrun and deepspeed already set the rendezvous variables.
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache/wcse/torch_extensions"))
    if spec.deepspeed is not None and "RANK" not in os.environ:
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1"
        )


def _build_model(spec: TrainSpec) -> PreTrainedModel:
    if spec.base_model is not None:
        # LoRA's base weights are frozen, so they need no fp32 master copy: bf16 halves their memory.
        frozen_bf16 = spec.lora is not None and spec.bf16
        model = models.load_causal_lm(
            spec.base_model, attn_implementation=spec.attn_implementation,
            gpu_16bit=spec.bf16 and torch.cuda.is_available(), dtype=torch.bfloat16 if frozen_bf16 else None,
        )
    else:
        torch.manual_seed(spec.seed)  # the fresh model's weights follow the run's seed
        model = LlamaForCausalLM(LlamaConfig(**spec.init_config))
        if spec.attn_implementation is not None:
            model.set_attn_implementation(spec.attn_implementation)
    if spec.lora is None:
        return model
    from peft import LoraConfig, get_peft_model  # only LoRA runs need peft

    model = get_peft_model(model, LoraConfig(**spec.lora, task_type="CAUSAL_LM"))
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA: %d of %d parameters trainable (%.3f%%)", trainable, total, 100 * trainable / total)
    return model


@torch.no_grad()
def merged_weights(model: Any) -> dict[str, torch.Tensor]:
    """A LoRA model's weights as a plain model's state dict, each adapter's delta added to its layer.

    Unlike ``merge_and_unload`` this leaves the training model as it is, so checkpoints can be
    written mid-run (unmerging in bf16 would not restore the base weights exactly).
    """
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas = {
        f"{name}.base_layer.weight": sum(module.get_delta_weight(a) for a in module.active_adapters)
        for name, module in base.named_modules() if isinstance(module, LoraLayer)
    }
    return {
        key.replace(".base_layer.", "."): value + deltas[key].to(value.dtype) if key in deltas else value
        for key, value in base.state_dict().items() if "lora_" not in key
    }


def _save_merged(model: Any, tokenizer: Any, path: Path) -> None:
    model.get_base_model().save_pretrained(path, state_dict=merged_weights(model))
    tokenizer.save_pretrained(path)


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
        if spec.lora is not None:
            raise ValueError("LoRA merges adapters into whole weights on rank 0: use ZeRO-2 or no DeepSpeed")
        zero.setdefault("stage3_gather_16bit_weights_on_model_save", True)
    return config


def _training_args(spec: TrainSpec) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(Path(spec.output_dir) / CHECKPOINTS),
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
        gradient_checkpointing=spec.gradient_checkpointing,
        seed=spec.seed,
        logging_steps=spec.logging_steps,
        save_strategy="no",  # _Checkpoints decides
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
    chat = spec.format == "chat"
    encoded = raw.map(
        lambda row: encode_example(tokenizer, row["prompt"], row["completion"], spec.max_length, chat=chat),
        remove_columns=raw.column_names,
    )
    # Rows whose prompt fills max_length have no supervised token and would only add NaN losses.
    kept = encoded.filter(lambda row: any(label != IGNORE_INDEX for label in row["labels"]))
    if len(kept) < len(encoded):
        log.warning("dropped %d of %d examples with no completion token within max_length=%d",
                    len(encoded) - len(kept), len(encoded), spec.max_length)
    return kept


def checkpoint_steps(max_steps: int, n: int) -> list[int]:
    """``n`` evenly spaced steps ending at ``max_steps`` (fewer when ``n > max_steps``)."""
    return sorted({round(i * max_steps / n) for i in range(1, n + 1)} - {0})


def _checkpoint_path(step: int, spec: TrainSpec) -> str:
    """Where a checkpoint's loadable weights are, relative to the output_dir (which may move)."""
    return f"{CHECKPOINTS}/checkpoint-{step}" + (f"/{MERGED}" if spec.lora is not None else "")


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def _resume_point(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint that still has its resumable state, if any."""
    resumable = [c for c in checkpoint_dir.glob("checkpoint-*") if (c / "trainer_state.json").exists()]
    return max(resumable, key=_step, default=None)


def _drop_resume_state(checkpoint: Path) -> None:
    for pattern in RESUME_STATE:
        for path in sorted(checkpoint.glob(pattern)):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


class _Checkpoints(TrainerCallback):
    """Saves at the given steps (evenly spaced is no fixed ``save_steps`` when N does not divide
    max_steps) and keeps resumable state in the newest checkpoint only.

    A LoRA checkpoint is the Trainer's (the adapter, to resume) with the merged weights, for
    selection, in ``merged/``: written before the Trainer's part, so a checkpoint complete enough
    to resume from has them, and out of the folder's top, which resuming would read as the adapter's model.

    It also logs at those steps and at the last, so the loss history covers every step and a
    resumed run continues it exactly where its checkpoint's history ends.
    """

    def __init__(self, steps: list[int], lora: bool) -> None:
        self.steps = set(steps)
        self.lora = lora

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if state.global_step in self.steps:
            control.should_save = control.should_log = True
            if self.lora and state.is_world_process_zero:
                merged = Path(args.output_dir) / f"checkpoint-{state.global_step}" / MERGED
                _save_merged(kwargs["model"], kwargs["processing_class"], merged)
        if state.global_step >= state.max_steps:
            control.should_log = True
        return control

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if state.is_world_process_zero:
            newest = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            for older in Path(args.output_dir).glob("checkpoint-*"):
                if older != newest:
                    _drop_resume_state(older)
        return control


class _SessionStart(TrainerCallback):
    """Where this process's part of the run starts: a resumed run's throughput counts only its own tokens."""

    step = tokens = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.step, self.tokens = state.global_step, state.num_input_tokens_seen
        return control


def _mean_loss(history: list[dict[str, float]]) -> float:
    """The mean per-step loss of the whole run; each logged loss averages the steps since the last log."""
    total, last = 0.0, 0
    for entry in history:
        total += entry["loss"] * (entry["step"] - last)
        last = entry["step"]
    return total / last


def _optimizer_name(optimizer: Any) -> str:
    """The optimizer that steps the weights, under accelerate's and DeepSpeed's wrappers
    (ZeRO-Offload: DeepSpeedCPUAdam)."""
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return type(optimizer).__name__


def _peak_tflops(spec: TrainSpec) -> float | None:
    if spec.peak_tflops is not None or not torch.cuda.is_available():
        return spec.peak_tflops
    return peak_bf16_tflops(torch.cuda.get_device_name())


def _throughput(spec: TrainSpec, model: torch.nn.Module, tokens_per_second: float, world_size: int) -> dict[str, Any]:
    """Model FLOPs utilisation. Training FLOPs per token: 6 x parameters (forward 2, backward 4 for
    activation and weight gradients; attention's own FLOPs left out, as is usual); frozen weights
    (LoRA) get no weight gradients, so 4 x parameters + 2 x trainable ones.
    """
    # ZeRO-3 leaves each rank a shard of every parameter; ds_numel is the whole size.
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]
    params = sum(n for n, _ in sizes)
    trainable = sum(n for n, requires_grad in sizes if requires_grad)
    flops_per_token = 4 * params + 2 * trainable
    achieved = tokens_per_second * flops_per_token / 1e12
    peak = _peak_tflops(spec)
    return {
        "model_params": params,
        "trainable_params": trainable,
        "flops_per_token": flops_per_token,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "mfu": None if peak is None else achieved / (peak * world_size),
    }


def train(spec: TrainSpec) -> dict[str, Any] | None:
    """Train (resuming an interrupted run), save the model, and return the metrics (on rank 0; ``None`` elsewhere)."""
    _set_process_env(spec)
    args = _training_args(spec)  # before the model: with ZeRO-3 it makes from_pretrained partition
    if spec.deepspeed is not None:
        # With use_cpu, accelerate starts torch.distributed but not deepspeed.comm, so ZeRO-3's
        # zero.Init in from_pretrained would see world size 1 and reject the batch size.
        import deepspeed  # only DeepSpeed runs pay for the import

        deepspeed.init_distributed()
    tokenizer = models.load_tokenizer(spec.tokenizer_path)
    model = _build_model(spec)
    with args.main_process_first(desc="tokenizing"):  # the others read the datasets cache it writes
        dataset = _load_dataset(spec, tokenizer)
    log.info("training %s on %d examples from %s for %d steps (world size %d, deepspeed %s)",
             spec.base_model or "a fresh model", len(dataset), spec.data_path, spec.max_steps,
             args.world_size, "on" if spec.deepspeed else "off")

    steps = checkpoint_steps(spec.max_steps, spec.checkpoints) if spec.checkpoints else []
    session = _SessionStart()
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset, data_collator=make_collator(tokenizer, packing=spec.packing),
        processing_class=tokenizer, callbacks=[_Checkpoints(steps, lora=spec.lora is not None), session],
    )
    resume = _resume_point(Path(args.output_dir))
    if resume is not None:
        log.info("resuming from %s (step %d of %d)", resume, _step(resume), spec.max_steps)
    result = trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    train_seconds = result.metrics["train_runtime"]  # the loop only, without DeepSpeed engine setup

    model_dir = Path(spec.output_dir) / "model"
    if spec.lora is None:
        trainer.save_model(str(model_dir))  # every rank: ZeRO-3 gathers the weights collectively
    if not trainer.is_world_process_zero():
        return None
    if spec.lora is not None:
        _save_merged(trainer.model, tokenizer, model_dir)
    tokens = trainer.state.num_input_tokens_seen
    history = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    tokens_per_second = (tokens - session.tokens) / train_seconds
    metrics = {
        "train_loss": _mean_loss(history),
        "loss_history": history,
        "steps": trainer.state.global_step,
        "resumed_from_step": session.step or None,
        "train_seconds": train_seconds,
        "train_tokens": tokens,
        "tokens_per_second": tokens_per_second,
        **_throughput(spec, trainer.model, tokens_per_second, args.world_size),
        "n_examples": len(dataset),
        "world_size": args.world_size,
        # what the model really trained with, read back from it
        "attn_implementation": trainer.model.config._attn_implementation,
        "gradient_checkpointing": trainer.model.is_gradient_checkpointing,
        "optimizer": _optimizer_name(trainer.optimizer),
        "checkpoints": [{"step": s, "path": _checkpoint_path(s, spec)} for s in steps],
    }
    metrics_path = Path(spec.output_dir) / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2))
    for checkpoint in Path(args.output_dir).glob("checkpoint-*"):  # the run is complete: nothing to resume
        _drop_resume_state(checkpoint)
    log.info("saved model to %s and metrics to %s (mean train loss %.4f, %.0f tokens/s)",
             model_dir, metrics_path, metrics["train_loss"], metrics["tokens_per_second"])
    return metrics


def _die_with_parent() -> None:
    """End this process when the one that started it ends, however it ends.

    torchrun starts each worker in a session of its own, so a launcher killed with SIGKILL (kill -9,
    the OOM killer) would leave its workers training on unseen, into the output_dir that a rerun
    resumes in. Linux's parent-death signal takes them down with it.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _leave_process_group() -> None:
    """Take the process group down together once rank 0 is done writing.

    A rank that exits with its gloo group alive can abort in a C++ destructor ("terminate called
    without an active exception"), failing a run whose results were all saved.
    """
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wcse.train.worker")
    parser.add_argument("spec", help="a TrainSpec saved as JSON")
    # The deepspeed launcher passes --local_rank=N; LOCAL_RANK in the environment says the same.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    spec = TrainSpec.load(parser.parse_args(argv).spec)
    _die_with_parent()
    rank = int(os.environ.get("RANK", "0"))
    # Rank 0 tells the story; the others speak only of trouble, so N processes give one log.
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    if rank != 0:
        datasets.disable_progress_bars()
    # DeepSpeed 0.19 calls collectives torch 2.13 deprecates: a FutureWarning per call site, step and rank.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed.c10d_logger")
    train(spec)
    _leave_process_group()


if __name__ == "__main__":
    main()
