"""End-to-end training through the worker process: DeepSpeed ZeRO-2 finetuning and pretraining."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from wcse.toy import tokenizer as toy_tokenizer
from wcse.toy import world
from wcse.train.launch import run_training
from wcse.train.sft import TrainSpec

ZERO2 = {
    "zero_optimization": {"stage": 2},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
    "zero_allow_untested_optimizer": True,
}


def _tiny_config(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=128,
        bos_token_id=2, eos_token_id=3, pad_token_id=0,
    )


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random tiny Llama with the toy tokenizer saved as a base model, and 32 toy solutions."""
    root = tmp_path_factory.mktemp("toy")
    tokenizer = toy_tokenizer.build_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**_tiny_config(len(tokenizer)))).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    rng = random.Random(0)
    with open(root / "train.jsonl", "w") as f:
        for p in world.generate("train", 32, seed=0):
            row = {"prompt": toy_tokenizer.prompt(p.question),
                   "completion": " " + world.reference_solution(p.meta, rng)}
            f.write(json.dumps(row) + "\n")
    return root / "base", root / "train.jsonl"


def _check_metrics(metrics: dict, out: Path, steps: int) -> None:
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["steps"] == steps and metrics["n_examples"] == 32 and metrics["world_size"] == 1
    losses = [e["loss"] for e in metrics["loss_history"]]
    assert len(losses) == steps and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0]
    # 4 rows a step, each well under 100 tokens and more than 20
    assert 4 * steps * 20 < metrics["train_tokens"] < 4 * steps * 100
    assert metrics["tokens_per_second"] > 0


def test_deepspeed_zero2_finetune(toy: tuple[Path, Path], tmp_path: Path) -> None:
    base, data = toy
    spec = TrainSpec(output_dir=str(tmp_path / "run"), data_path=str(data), base_model=str(base), max_steps=5,
                     per_device_batch_size=4, learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1,
                     deepspeed=ZERO2)
    metrics = run_training(spec, log_path=tmp_path / "train.log")
    _check_metrics(metrics, tmp_path / "run", steps=5)
    assert "zero" in (tmp_path / "train.log").read_text().lower()  # DeepSpeed really ran

    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    initial = AutoModelForCausalLM.from_pretrained(base)
    before, after = initial.state_dict(), trained.state_dict()
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    assert (tmp_path / "run" / "model" / "tokenizer.json").exists()


def test_pretrain_from_init_config(toy: tuple[Path, Path], tmp_path: Path) -> None:
    base, data = toy
    spec = TrainSpec(output_dir=str(tmp_path / "run"), data_path=str(data), init_config=_tiny_config(152),
                     tokenizer_path=str(base), max_steps=4, per_device_batch_size=4, learning_rate=1e-2,
                     logging_steps=1)
    metrics = run_training(spec)
    _check_metrics(metrics, tmp_path / "run", steps=4)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert model.config.hidden_size == 64


def test_failure_raises_with_output_tail(tmp_path: Path) -> None:
    """A broken run surfaces the worker's own error, not just an exit code."""
    spec = TrainSpec(output_dir=str(tmp_path / "run"), data_path=str(tmp_path / "missing.jsonl"),
                     base_model=str(tmp_path / "no-model"), max_steps=1, per_device_batch_size=1,
                     learning_rate=1.0)
    with pytest.raises(RuntimeError, match="training failed") as failure:
        run_training(spec)
    assert "no-model" in str(failure.value)
