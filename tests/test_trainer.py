"""Training through the worker process: DeepSpeed ZeRO-2 finetuning, pretraining, and the fast
parts of checkpoints, LoRA, MFU and launch (multi-process runs: test_trainer_distributed.py)."""

from __future__ import annotations

import copy
import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

from tests.test_models import COMMIT_A, COMMIT_B, GEMMA2, hub_cache, save_llama, tokenizer_without_pad
from wcse.toy import tokenizer as toy_tokenizer
from wcse.toy import world
from wcse.train.launch import command, run_training
from wcse.train.spec import TrainSpec
from wcse.train.worker import checkpoint_steps, merged_weights, peak_bf16_tflops

ZERO2 = {
    "zero_optimization": {"stage": 2},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "gradient_clipping": "auto",
    "zero_allow_untested_optimizer": True,
}


def tiny_config(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=128,
        bos_token_id=2, eos_token_id=3, pad_token_id=0,
    )


def write_toy(root: Path) -> tuple[Path, Path]:
    """A random tiny Llama with the toy tokenizer saved as a base model, and 32 toy solutions."""
    tokenizer = toy_tokenizer.build_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**tiny_config(len(tokenizer)))).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    rng = random.Random(0)
    with open(root / "train.jsonl", "w") as f:
        for p in world.generate("train", 32, seed=0):
            row = {"prompt": toy_tokenizer.prompt(p.question),
                   "completion": " " + world.reference_solution(p.meta, rng)}
            f.write(json.dumps(row) + "\n")
    return root / "base", root / "train.jsonl"


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_toy(tmp_path_factory.mktemp("toy"))


def _check_metrics(metrics: dict, out: Path, steps: int) -> None:
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["steps"] == steps and metrics["n_examples"] == 32 and metrics["world_size"] == 1
    losses = [e["loss"] for e in metrics["loss_history"]]
    assert len(losses) == steps and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0]
    # 4 rows a step, each well under 100 tokens and more than 20
    assert 4 * steps * 20 < metrics["train_tokens"] < 4 * steps * 100
    assert metrics["tokens_per_second"] > 0
    # full finetuning: 6 FLOPs per parameter and token; no known peak on a CPU, so no MFU
    assert metrics["flops_per_token"] == 6 * metrics["model_params"] == 6 * metrics["trainable_params"]
    assert metrics["achieved_tflops"] > 0 and metrics["mfu"] is None
    assert metrics["checkpoints"] == [] and metrics["resumed_from_step"] is None


def test_deepspeed_zero2_finetune(toy: tuple[Path, Path], tmp_path: Path) -> None:
    base, data = toy
    spec = TrainSpec(output_dir=str(tmp_path / "run"), data_path=str(data), base_model=str(base), max_steps=5,
                     per_device_batch_size=4, learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1,
                     deepspeed=ZERO2)
    metrics = run_training(spec, log_path=tmp_path / "train.log")
    _check_metrics(metrics, tmp_path / "run", steps=5)
    assert "zero" in (tmp_path / "train.log").read_text().lower()  # DeepSpeed really ran
    assert (metrics["attn_implementation"], metrics["gradient_checkpointing"]) == ("sdpa", False)  # Llama's default

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
    spec = TrainSpec(output_dir=str(tmp_path / "run"), data_path=str(data), init_config=tiny_config(len(toy_tokenizer.vocabulary())),
                     tokenizer_path=str(base), max_steps=4, per_device_batch_size=4, learning_rate=1e-2,
                     logging_steps=1, attn_implementation="eager", gradient_checkpointing=True)
    metrics = run_training(spec)
    _check_metrics(metrics, tmp_path / "run", steps=4)
    assert (metrics["attn_implementation"], metrics["gradient_checkpointing"]) == ("eager", True)  # as configured
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


def test_checkpoint_steps_are_evenly_spaced_and_end_at_the_last() -> None:
    assert checkpoint_steps(16, 4) == [4, 8, 12, 16]
    assert checkpoint_steps(16, 3) == [5, 11, 16]
    assert checkpoint_steps(600, 10) == list(range(60, 601, 60))
    assert checkpoint_steps(3, 10) == [1, 2, 3]  # never more checkpoints than steps


def test_merged_weights_equal_merge_and_unload(toy: tuple[Path, Path]) -> None:
    """Checkpoints merge adapters without touching the training model; the result is peft's own merge."""
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(toy[0]),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: make the adapters do something
            param.data.normal_()
    before = copy.deepcopy(model.state_dict())
    merged = merged_weights(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[k], expected[k]) for k in expected)


def test_peak_flops_lookup_takes_the_most_specific_name() -> None:
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0  # the SXM part
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA GH200 480GB") == 989.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("NVIDIA L40S") == 362.0
    assert peak_bf16_tflops("NVIDIA L4") == 121.0
    assert peak_bf16_tflops("Tesla T4") is None  # no bf16 tensor cores: no MFU rather than a wrong one


def test_launch_commands(tmp_path: Path) -> None:
    def cmd(launcher: str, nprocs: int) -> list[str]:
        spec = TrainSpec(output_dir=str(tmp_path), data_path="d.jsonl", base_model="m", max_steps=1,
                         per_device_batch_size=1, learning_rate=1.0, launcher=launcher, nprocs=nprocs)
        return command(spec, tmp_path / "spec.json")

    worker = ["wcse.train.worker", str(tmp_path / "spec.json")]
    assert cmd("python", 1) == [sys.executable, "-m", *worker]
    assert cmd("torchrun", 4) == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  "--nproc_per_node", "4", "-m", *worker]
    deepspeed = cmd("deepspeed", 8)
    assert deepspeed[:5] == [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "8"]
    assert deepspeed[5] == "--master_port" and int(deepspeed[6]) > 0
    assert deepspeed[7:] == ["--module", *worker]


def test_an_output_dir_of_another_spec_is_refused(toy: tuple[Path, Path], tmp_path: Path) -> None:
    """Resuming is for the same run: another spec's optimizer state and checkpoints must not be reused."""
    base, data = toy
    spec = TrainSpec(output_dir=str(tmp_path), data_path=str(data), base_model=str(base), max_steps=4,
                     per_device_batch_size=4, learning_rate=1e-2)
    spec.save(tmp_path / "spec.json")
    spec.learning_rate = 1e-3
    with pytest.raises(ValueError, match="another TrainSpec"):
        run_training(spec)


@pytest.mark.slow
def test_gemma2_trains_with_eager_attention_and_the_same_loss_with_gradient_checkpointing(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    """A soft-capping model loads with eager attention by default (sdpa would drop the cap), and
    recomputing activations changes the memory, not the numbers: the same losses and weights."""
    base = tmp_path / "gemma2"
    torch.manual_seed(0)
    Gemma2ForCausalLM(Gemma2Config(**GEMMA2)).save_pretrained(base)
    AutoTokenizer.from_pretrained(toy[0]).save_pretrained(base)
    runs = {}
    for checkpointing in (False, True):
        spec = TrainSpec(output_dir=str(tmp_path / f"gc-{checkpointing}"), data_path=str(toy[1]), base_model=str(base),
                         max_steps=4, per_device_batch_size=8, learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1,
                         gradient_checkpointing=checkpointing)
        runs[checkpointing] = run_training(spec)
        assert runs[checkpointing]["attn_implementation"] == "eager"
        assert runs[checkpointing]["gradient_checkpointing"] is checkpointing
    losses = {gc: [e["loss"] for e in m["loss_history"]] for gc, m in runs.items()}
    assert losses[True] == pytest.approx(losses[False], rel=1e-6) and losses[False][-1] < losses[False][0]
    plain, recomputed = (AutoModelForCausalLM.from_pretrained(tmp_path / f"gc-{gc}" / "model").state_dict()
                         for gc in (False, True))
    for key in plain:
        torch.testing.assert_close(recomputed[key], plain[key])


def test_a_pinned_hub_model_without_pad_token_finetunes(
    toy: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``org/tiny@<commit>`` trains the weights of that commit, not main's; its tokenizer has no pad
    token (as Llama-3 base's has none), so EOS pads, with a warning, and the saved tokenizer keeps it."""
    main = save_llama(tmp_path / "main", layers=1)
    pinned = save_llama(tmp_path / "pinned", layers=2, tokenizer=tokenizer_without_pad())
    cache = hub_cache(tmp_path / "hub", "org/tiny", {COMMIT_A: main, COMMIT_B: pinned}, {"main": COMMIT_A})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # the worker's hub: this cache, offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = TrainSpec(output_dir=str(tmp_path / "run"), data_path=str(toy[1]), base_model=f"org/tiny@{COMMIT_B}",
                     max_steps=3, per_device_batch_size=4, learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1)
    metrics = run_training(spec, log_path=tmp_path / "train.log")
    assert f"tokenizer of org/tiny@{COMMIT_B} has no pad token: padding with '</s>' (eos)" in (
        tmp_path / "train.log").read_text()
    assert metrics["steps"] == 3 and all(map(math.isfinite, (e["loss"] for e in metrics["loss_history"])))
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").config.num_hidden_layers == 2
    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert (saved.pad_token, saved.pad_token_id) == ("</s>", saved.eos_token_id)
