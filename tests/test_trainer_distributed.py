"""Training as several processes through the launchers, on CPU (gloo): two processes follow one
process's loss curve, so does ZeRO-3 with offloading, a killed run resumes where it stopped, LoRA
saves merged weights."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from tests.conftest import CONF
from tests.test_trainer import ZERO2, write_toy
from wcse.toy.tokenizer import vocabulary
from wcse.train.launch import command, run_training
from wcse.train.spec import TrainSpec

ZERO3 = {**ZERO2, "zero_optimization": {"stage": 3}}
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}
# Slower steps than the tiny base model's, so a run can be caught between two checkpoints.
RESUME_MODEL = dict(
    vocab_size=len(vocabulary()), hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=4, head_dim=64, max_position_embeddings=128, bos_token_id=2, eos_token_id=3, pad_token_id=0,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_process() -> Any:
    """Processes share two cores with whatever else runs: OpenMP threads spinning for a busy
    core made small runs ~40x slower here. torchrun sets this itself; the other launchers do not."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_toy(tmp_path_factory.mktemp("toy"))


def _spec(toy: tuple[Path, Path], out: Path, **kwargs: Any) -> TrainSpec:
    """The toy model's training spec; ``kwargs`` override any field (a test may point data_path elsewhere)."""
    base, data = toy
    defaults = dict(
        output_dir=str(out), data_path=str(data), base_model=str(base), max_steps=8, learning_rate=1e-2,
        warmup_ratio=0.0, logging_steps=1,
    )
    return TrainSpec(**{**defaults, **kwargs})


def _losses(metrics: dict) -> list[float]:
    assert [e["step"] for e in metrics["loss_history"]] == list(range(1, metrics["steps"] + 1))
    return [e["loss"] for e in metrics["loss_history"]]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


@pytest.fixture(scope="module")
def one_process(toy: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("one_process") / "run"
    return run_training(_spec(toy, out, per_device_batch_size=8, deepspeed=ZERO2, checkpoints=2))


@pytest.mark.slow
@pytest.mark.parametrize(("zero", "launcher"), [(ZERO2, "torchrun"), (ZERO3, "torchrun"), (ZERO2, "deepspeed")],
                         ids=["zero2-torchrun", "zero3-torchrun", "zero2-deepspeed"])
def test_two_processes_follow_the_one_process_loss_curve(
    toy: tuple[Path, Path], one_process: dict, tmp_path: Path, zero: dict, launcher: str
) -> None:
    """Same data, seed and effective batch (1 x 8 vs 2 x 4): each global batch is the same 8 rows,
    split across the ranks, and the loss is the mean over all their tokens either way. In fp32 only
    the order of the sums differs (observed: 1.2e-7 relative), so rel=1e-4 has a wide margin while
    a wrong data split or loss scaling moves the curve by percents."""
    run = tmp_path / "run"
    spec = _spec(toy, run, per_device_batch_size=4, deepspeed=zero, checkpoints=2, nprocs=2, launcher=launcher)
    start = time.perf_counter()
    metrics = run_training(spec, log_path=tmp_path / "train.log")
    print(f"{launcher} ZeRO-{zero['zero_optimization']['stage']} x2: {time.perf_counter() - start:.1f}s wall")

    assert metrics["world_size"] == 2 and metrics["steps"] == 8
    assert metrics["train_tokens"] == one_process["train_tokens"]  # the same rows, all of them
    assert _losses(metrics) == pytest.approx(_losses(one_process), rel=1e-4)
    assert metrics["model_params"] == one_process["model_params"]  # ZeRO-3 counts whole, not its shards

    # One run directory, one metrics.json, and rank 0 alone tells the story.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "train.log"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "metrics.json", "model", "spec.json"]
    log = (tmp_path / "train.log").read_text()
    assert log.count("wcse.train.worker: training ") == 1
    if launcher == "deepspeed":
        assert "--local_rank=1" in log  # passed to the worker, which takes it

    # Checkpoints are whole weights (ZeRO-3: gathered), plain models once the run is complete.
    assert [c["step"] for c in metrics["checkpoints"]] == [4, 8]
    last, final = _weights(run / metrics["checkpoints"][-1]["path"]), _weights(run / "model")
    assert all(torch.equal(last[k], final[k]) for k in final)
    assert (run / metrics["checkpoints"][0]["path"] / "tokenizer.json").exists()
    assert not list(run.glob("checkpoints/*/trainer_state.json")) and not list(run.glob("checkpoints/*/global_step*"))


@pytest.mark.slow
@pytest.mark.parametrize(("bf16", "rel"), [(False, 1e-4), (True, 3e-3)], ids=["fp32", "bf16"])
def test_zero3_offload_follows_the_one_process_loss_curve(
    toy: tuple[Path, Path], one_process: dict, tmp_path: Path, bf16: bool, rel: float
) -> None:
    """conf/trainer/zero3_offload.yaml's DeepSpeed section and gradient checkpointing, as they are:
    ZeRO-3 with parameters and optimizer state offloaded to the CPU, stepped by DeepSpeedCPUAdam
    (its op compiles on first use, ~75 s on an idle machine, then is kept in TORCH_EXTENSIONS_DIR).

    4 rows x 2 accumulation steps against 8 x 1 of ZeRO-2 with torch's AdamW: in fp32 the same
    curve to rounding (observed: 4.9e-7 relative at most); the config's bf16 runs on CPU too, its
    rounding moving the losses by up to 3.0e-4 relative (observed), so a wrong accumulation or
    loss scale (percents) still fails.
    """
    trainer = OmegaConf.load(CONF / "trainer" / "zero3_offload.yaml")
    run = tmp_path / "run"
    start = time.perf_counter()
    metrics = run_training(_spec(
        toy, run, per_device_batch_size=4, gradient_accumulation_steps=2, checkpoints=2, bf16=bf16,
        deepspeed=OmegaConf.to_container(trainer.deepspeed), gradient_checkpointing=trainer.gradient_checkpointing,
    ))
    worst = max(abs(a / b - 1) for a, b in zip(_losses(metrics), _losses(one_process), strict=True))
    print(f"zero3_offload {'bf16' if bf16 else 'fp32'}: {time.perf_counter() - start:.1f}s wall, {worst:.1e} relative")

    assert (metrics["optimizer"], metrics["gradient_checkpointing"]) == ("DeepSpeedCPUAdam", True)
    assert one_process["optimizer"] == "AdamW"
    assert metrics["train_tokens"] == one_process["train_tokens"]
    assert _losses(metrics) == pytest.approx(_losses(one_process), rel=rel)
    assert _losses(metrics)[-1] < _losses(metrics)[0]
    last, final = _weights(run / metrics["checkpoints"][-1]["path"]), _weights(run / "model")  # gathered whole
    assert final.keys() == _weights(toy[0]).keys() and all(torch.equal(last[k], final[k]) for k in final)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("nprocs", "launcher", "zero", "lora"),
    [(1, "python", ZERO2, None), (2, "torchrun", ZERO3, None), (1, "python", None, LORA)],
    ids=["zero2-1proc", "zero3-2proc", "lora"],
)
def test_killed_run_resumes_from_its_last_checkpoint(
    toy: tuple[Path, Path], tmp_path: Path, nprocs: int, launcher: str, zero: dict | None, lora: dict | None
) -> None:
    """kill -9 of the launcher after the first checkpoint; the rerun resumes and ends as an uninterrupted run.

    Checkpoints at 5, 11, 16 of 16 steps, 4 steps an epoch: a resume starts mid-epoch, so the data
    loader must skip the batches already seen and restore the sampler's and the RNG's state.
    """

    def spec(out: Path) -> TrainSpec:
        return TrainSpec(output_dir=str(out), data_path=str(toy[1]), init_config=RESUME_MODEL, tokenizer_path=str(toy[0]),
                         max_steps=16, per_device_batch_size=4 // nprocs, gradient_accumulation_steps=2,
                         learning_rate=1e-3, logging_steps=1, deepspeed=zero, checkpoints=3, nprocs=nprocs,
                         launcher=launcher, lora=lora)

    start = time.perf_counter()
    reference = run_training(spec(tmp_path / "reference"))
    print(f"uninterrupted {launcher} x{nprocs}: {time.perf_counter() - start:.1f}s wall")

    out = tmp_path / "killed"
    out.mkdir()
    spec(out).save(out / "spec.json")
    launched = subprocess.Popen(command(spec(out), out / "spec.json"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    while not (out / "checkpoints" / "checkpoint-5" / "trainer_state.json").exists():
        assert launched.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    launched.kill()  # the launcher only: torchrun's workers have sessions of their own and must die with it
    launched.wait()
    time.sleep(1)
    assert not (out / "metrics.json").exists()

    start = time.perf_counter()
    metrics = run_training(spec(out), log_path=tmp_path / "resume.log")
    print(f"resumed {launcher} x{nprocs}: {time.perf_counter() - start:.1f}s wall")
    resumed = metrics["resumed_from_step"]
    assert resumed in (5, 11)
    assert f"resuming from {out / 'checkpoints' / f'checkpoint-{resumed}'}" in (tmp_path / "resume.log").read_text()
    assert metrics["steps"] == 16
    assert [c["step"] for c in metrics["checkpoints"]] == [5, 11, 16]
    assert all((out / c["path"] / "model.safetensors").exists() for c in metrics["checkpoints"])
    assert not list(out.glob("checkpoints/*/trainer_state.json"))

    # Optimizer, scheduler, data position and RNG all restored: on CPU the same run to the last bit.
    assert _losses(metrics) == pytest.approx(_losses(reference), rel=1e-6)
    assert metrics["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-6)
    expected, got = _weights(tmp_path / "reference" / "model"), _weights(out / "model")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])


def test_lora_trains_adapters_and_saves_merged_weights(toy: tuple[Path, Path], tmp_path: Path) -> None:
    """With gradient checkpointing, as conf/trainer/lora.yaml has it: the adapters inside recomputed
    layers, whose frozen inputs need no gradient, must still get theirs (every one of them changes)."""
    run = tmp_path / "run"
    metrics = run_training(_spec(toy, run, max_steps=4, per_device_batch_size=8, checkpoints=2, lora=LORA,
                                 gradient_checkpointing=True))
    assert metrics["gradient_checkpointing"] is True

    base = AutoModelForCausalLM.from_pretrained(toy[0])
    linears = {name: m for name, m in base.named_modules() if isinstance(m, torch.nn.Linear) and name != "lm_head"}
    adapters = sum(LORA["r"] * (m.in_features + m.out_features) for m in linears.values())
    assert metrics["trainable_params"] == adapters
    assert metrics["model_params"] == sum(p.numel() for p in base.parameters()) + adapters
    # frozen weights skip their weight gradients: 4 FLOPs per parameter and token, 6 for the adapters
    assert metrics["flops_per_token"] == 4 * metrics["model_params"] + 2 * adapters
    assert _losses(metrics)[-1] < _losses(metrics)[0]

    before = base.state_dict()
    for path in [run / "model", *(run / c["path"] for c in metrics["checkpoints"])]:
        merged = _weights(path)  # a plain model: no adapter files left to make it load as one
        assert merged.keys() == before.keys()
        changed = {k for k in before if not torch.equal(before[k], merged[k])}
        assert changed == {f"{name}.weight" for name in linears}  # only where the adapters sit
    assert not list(run.rglob("adapter_*"))
    assert (run / "model" / "tokenizer.json").exists()


@pytest.mark.slow
def test_the_cli_launches_two_ranks_under_one_hydra_run_directory(tmp_path: Path) -> None:
    """Hydra composes once in the parent; torchrun's ranks never see Hydra or make run dirs."""
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "wcse.main", "experiment=toy_tiny", "trainer.launcher=torchrun", "trainer.nprocs=2",
         "trainer.per_device_batch_size=4", "stages=[dataset,sample,verify,train]",
         f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {arm: summary["train"][arm]["world_size"] for arm in ("wc", "se")} == {"wc": 2, "se": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "run"]  # no outputs/ from any rank
    assert [p.name for p in run_dir.iterdir() if p.is_dir()] == [".hydra"]
