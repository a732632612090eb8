"""What the cost plan assumes where nothing measured says otherwise: the hardware, and how long
solutions are. One typed schema with its defaults; ``conf/local/plan.yaml`` (a cluster's GPU type
and GPU-hour price, git-ignored) and ``plan.<key>=value`` arguments override them, in that order.

The defaults, and where they come from:

- ``hardware.gpu: H100``: peak dense bf16 TFLOPS from :data:`wcse.hardware.PEAK_BF16_TFLOPS`
  (989 for H100 SXM); ``hardware.peak_tflops`` sets it directly for a GPU not in the table.
- ``hardware.train_mfu: 0.35``: model FLOPs utilisation of ZeRO-3 finetuning (6 FLOPs per
  parameter and token, recomputation not counted, as ``metrics.json``'s MFU): an assumption,
  typical of published dense-model finetuning at this scale, not measured here (no GPU).
- ``hardware.sample_mfu: 0.15``: the same for vLLM sampling (2 FLOPs per parameter and token):
  decoding is bound by memory bandwidth; 0.15 is what vLLM's published throughput for 8-70B
  models on H100 works out to, again not measured here.
- ``generated_tokens.<dataset>``: mean tokens of one solution, used until a sample store holds
  samples of that model (then the plan measures them): measured with SmolLM2-135M's tokenizer
  (49k vocabulary; Gemma2's 256k one counts somewhat fewer) on real model outputs where there
  are some: MATH 409 (100 Qwen2.5-Math CoT solutions, tests/data/real_outputs.jsonl), GSM8K 138
  (108 GPT-3 solutions, same file); on reference solutions otherwise: MBPP 67 (974 programs),
  HumanEval 59 (164); toy_arith 24 (the toy models' 160 samples of experiment=toy_tiny).
- ``chars_per_token: 2.5``: prompt tokens from characters when the model's tokenizer is not on
  this machine (SmolLM2's tokenizer gives 2.3-2.7 characters per token on MATH text; fewer
  characters per token overestimates, so the plan errs on the expensive side).
- ``tolerance: 0.05``: a planned WC/SE cost ratio further than this from 1 is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from wcse.hardware import peak_bf16_tflops

LOCAL = Path(__file__).resolve().parents[2] / "conf" / "local" / "plan.yaml"
PREFIX = "plan."  # command-line arguments for the plan's assumptions, not the run's config


@dataclass
class HardwareConfig:
    gpu: str = "H100"  # a name in wcse.hardware.PEAK_BF16_TFLOPS (substring match)
    peak_tflops: float | None = None  # dense bf16 per GPU; None: from the table for `gpu`
    gpu_hour_usd: float | None = None  # price of one GPU-hour; None: GPU-hours only
    train_mfu: float = 0.35
    sample_mfu: float = 0.15

    def peak(self) -> float:
        peak = self.peak_tflops or peak_bf16_tflops(self.gpu)
        if peak is None:
            raise ValueError(f"plan.hardware.gpu={self.gpu!r} is not in wcse.hardware's table: set plan.hardware.peak_tflops")
        return peak


@dataclass
class PlanConfig:
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    generated_tokens: dict[str, float] = field(
        default_factory=lambda: {
            "math": 409.0, "functional_math": 409.0, "gsm8k": 138.0, "mbpp": 67.0, "humaneval": 59.0,
            "toy_arith": 24.0, "toy_arith_variants": 24.0,
        }
    )
    chars_per_token: float = 2.5
    tolerance: float = 0.05


def load(overrides: Sequence[str] = (), local: Path = LOCAL) -> PlanConfig:
    """The defaults, then ``local`` when it exists, then ``overrides`` (``plan.key=value``)."""
    cfg = OmegaConf.structured(PlanConfig)
    if local.is_file():
        cfg = OmegaConf.merge(cfg, OmegaConf.load(local))
    dotlist = [o[len(PREFIX):] for o in overrides]
    plan: PlanConfig = OmegaConf.to_object(OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist)))
    h = plan.hardware
    for name, value in (("train_mfu", h.train_mfu), ("sample_mfu", h.sample_mfu)):
        if not 0 < value <= 1:
            raise ValueError(f"plan.hardware.{name}={value}: must be in (0, 1]")
    if plan.chars_per_token <= 0 or plan.tolerance < 0:
        raise ValueError(f"plan.chars_per_token={plan.chars_per_token} must be > 0 and plan.tolerance={plan.tolerance} >= 0")
    h.peak()
    return plan
