"""What one grid cell will cost, from its planned stages (:func:`wcse.runner.plan`; nothing built
but the cheap dataset artifact).

- **Sampling**, per sampler: the requests of its planned :class:`~wcse.stages.sample.SampleSet`
  (problems x samples per problem). Tokens: a request already in the sample store counts its
  logged prompt and generated tokens; a missing one counts its prompt with the model's tokenizer
  (when it loads without the network; else characters / ``chars_per_token``) and the mean
  generated length of the stored samples of that model, or ``generated_tokens.<dataset>``.
  FLOPs and dollars are :func:`wcse.budget.realised_cost` of those counts: what the run's summary
  will report as realised. GPU time: FLOPs / (peak x ``sample_mfu``), where vLLM computes a
  problem's prompt once for all its samples (prefix caching).
- **Finetuning**, per arm: steps x global batch (per device x accumulation x processes x
  nodes) rows of (zero-shot prompt + mean solution) tokens, at most ``trainer.max_length``;
  FLOPs 6 x parameters per token (LoRA: 4, the frozen weights get no weight gradients), GPU time
  at ``train_mfu``. A finetune already in the cache costs nothing.
- **Evaluation**: greedy or sampled generations of each arm's checkpoints on validation, its
  chosen model on test (and the transfer set), the base models on test; 2 FLOPs per parameter
  and token at ``sample_mfu``. Not checked against the cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from wcse import budget as budget_lib
from wcse import models
from wcse.data import prompts
from wcse.plan.assumptions import PlanConfig
from wcse.records import Problem
from wcse.roles import SAMPLERS
from wcse.runner import plan as plan_stages
from wcse.stages.sample import SampleSet
from wcse.train.arms import arm_sources

CONF = Path(__file__).resolve().parents[2] / "conf"
TRUNCATION_FLAG = 0.05  # stored samples cut by max_new_tokens beyond this share are flagged


@dataclass(frozen=True)
class Tokens:
    """One request's token counts, as :func:`wcse.budget.realised_cost` reads a sample's."""

    prompt_tokens: float
    generated_tokens: float


@dataclass
class Sampling:
    """One sampler's part of a cell."""

    role: str
    model: str
    store: str
    params: float | None
    per_problem: int
    requests: int
    stored: int  # of the requests, already in the store
    prompt_tokens: float
    generated_tokens: float
    lengths: str  # where the counts come from
    flops: float | None
    dollars: float | None  # API prices
    gpu_hours: float | None
    truncated: float | None  # share of the stored samples cut by max_new_tokens


@dataclass
class Finetune:
    arm: str
    target: str
    path: str
    params: float | None
    steps: int
    global_batch: int
    row_tokens: float
    tokens: float
    flops: float | None
    gpu_hours: float | None
    gpus: int
    cached: bool


@dataclass
class Evaluation:
    key: str  # what it scores (an arm's finetune or a base model), for counting each once in a grid
    model: str
    generations: int
    tokens: float
    flops: float | None
    gpu_hours: float | None


@dataclass
class Cell:
    label: str
    overrides: list[str]
    problems: int = 0
    budget: dict[str, Any] = field(default_factory=dict)
    sampling: list[Sampling] = field(default_factory=list)
    finetunes: list[Finetune] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    ratios: dict[str, float | None] = field(default_factory=dict)  # planned WC/SE cost ratios
    flags: list[str] = field(default_factory=list)
    error: str | None = None


class TokenCounter:
    """Prompt tokens of a model's prompts: its tokenizer where it loads without the network
    (local folders, the HF cache), else characters / ``chars_per_token``."""

    def __init__(self, chars_per_token: float) -> None:
        self.chars_per_token = chars_per_token
        self._tokenizers: dict[str, Any] = {}
        self._counted: dict[tuple[str, str], float] = {}  # the cells of a grid share prompts

    def tokenizer(self, path: str) -> Any:
        if path not in self._tokenizers:
            try:
                from transformers import AutoTokenizer

                repo, revision = models.split_revision(path)
                self._tokenizers[path] = AutoTokenizer.from_pretrained(repo, revision=revision, local_files_only=True)
            except Exception:  # absent here (a hub id not downloaded, an API model): estimate from characters
                self._tokenizers[path] = None
        return self._tokenizers[path]

    def counts(self, path: str, texts: Sequence[str]) -> tuple[list[float], str]:
        tokenizer = self.tokenizer(path)
        if tokenizer is None:
            return [len(t) / self.chars_per_token for t in texts], f"{self.chars_per_token} chars/token"
        new = list(dict.fromkeys(t for t in texts if (path, t) not in self._counted))
        if new:
            ids = tokenizer(new, add_special_tokens=True)["input_ids"]
            self._counted.update(((path, t), float(len(i))) for t, i in zip(new, ids, strict=True))
        return [self._counted[(path, t)] for t in texts], "tokenizer"


def known_sizes() -> dict[str, float]:
    """Parameter counts by model path from every ``conf/model_pair`` file: a pair's finetuning
    target (Gemini's Gemma models) is sized by the pair that samples with it."""
    sizes: dict[str, float] = {}
    for file in sorted((CONF / "model_pair").glob("*.yaml")):
        pair = OmegaConf.load(file)
        for role in ("wc", "se", "student"):
            spec = pair.get(role)
            if spec is not None and spec.get("params") is not None:
                sizes.setdefault(str(spec.path), float(spec.params))
    return sizes


def _sum(values: Iterable[float | None]) -> float | None:
    """The sum of the known values; None when none is known (no size, no price)."""
    known = [v for v in values if v is not None]
    return float(sum(known)) if known else None


def _hours(flops: float | None, peak_tflops: float, mfu: float) -> float | None:
    return None if flops is None else flops / (peak_tflops * 1e12 * mfu) / 3600


class CellPlanner:
    """Plans cells one after another, sharing tokenizers and the table of model sizes."""

    def __init__(self, assumptions: PlanConfig) -> None:
        self.a = assumptions
        self.peak = assumptions.hardware.peak()
        self.counter = TokenCounter(assumptions.chars_per_token)
        self.sizes = known_sizes()

    def plan(self, cfg: Any, label: str, overrides: list[str]) -> Cell:
        """One cell's cost; a cell whose stages cannot be planned (bad settings, no data) is
        returned with its ``error`` rather than raised, so a grid shows every bad cell."""
        from wcse.settings import validate

        cell = Cell(label, overrides)
        try:
            validate(cfg)
            planned = plan_stages(cfg, check_cache=False)
        except Exception as err:  # a planning error of one cell: reported in its row
            cell.error = f"{type(err).__name__}: {err}"
            return cell
        outputs, ctx = planned.outputs, planned.ctx
        dataset = outputs["dataset"].main
        cell.problems = len(dataset.splits["train"])
        samples = outputs["sample"]
        cell.budget = samples.budget.to_dict()
        generated = {}
        for role in SAMPLERS:
            s, mean_generated = self._sampling(cfg, role, samples.sets[role], dataset)
            cell.sampling.append(s)
            generated[role] = mean_generated
        self._ratios(cfg, cell)
        models_ = outputs["pretrain"]
        zero_shot = self._prompt_tokens(models_.path(cfg.setup.target, target=True), dataset)
        for arm, runs in outputs.get("train", {}).items():
            mean = sum(generated[source] for source in arm_sources(arm)) / len(arm_sources(arm))
            cell.finetunes += [self._finetune(ctx, cfg, arm if len(runs) == 1 else f"{arm} (lr {t.learning_rate:g})", t, zero_shot + mean) for t in runs]
        if "evaluate" in cfg.stages:
            cell.evaluations = self._evaluations(cfg, outputs, zero_shot, generated)
        return cell

    # -- sampling ---------------------------------------------------------------------------
    def _sampling(self, cfg: Any, role: str, sset: SampleSet, dataset: Any) -> tuple[Sampling, float]:
        spec = cfg.model_pair[role]
        present = sset.store.keys()
        stored = sset.store.select([r.key for r in sset.requests if r.key in present])
        missing = [r for r in sset.requests if r.key not in present]
        configured = self.a.generated_tokens.get(dataset.name)
        if stored:
            mean_generated = sum(s.generated_tokens for s in stored) / len(stored)
            lengths = f"measured ({len(stored):,} samples)"
        elif configured is not None:
            mean_generated = configured
            lengths = f"plan.generated_tokens.{dataset.name}"
        else:
            raise ValueError(f"no stored samples of {spec.name} and no plan.generated_tokens.{dataset.name}: set it")
        estimated: list[Tokens] = []
        if missing:
            texts = {r.problem_id: _prompt_text(r) for r in missing}  # one prompt per problem
            counts, how = self.counter.counts(sset.model_path, list(texts.values()))
            by_problem = dict(zip(texts, counts, strict=True))
            estimated = [Tokens(by_problem[r.problem_id], mean_generated) for r in missing]
            lengths += f"; {len(missing):,} to sample, prompts by {how}"
        cost = budget_lib.realised_cost(
            [*stored, *estimated], params=spec.params,
            price_in_per_mtok=spec.price_in_per_mtok, price_out_per_mtok=spec.price_out_per_mtok,
        )
        prefix_cached = cfg.sampler.backend in ("vllm", "openai")  # vLLM (offline or served) computes a prompt once
        compute_tokens = cost.generated_tokens + cost.prompt_tokens / (sset.per_problem if prefix_cached else 1)
        api = spec.params is None
        gpu_hours = None if api else _hours(2 * spec.params * compute_tokens, self.peak, self.a.hardware.sample_mfu)
        truncated = sum(not s.finished for s in stored) / len(stored) if stored else None
        out = Sampling(
            role, spec.name, str(sset.store.root), spec.params, sset.per_problem, len(sset.requests), len(stored),
            cost.prompt_tokens, cost.generated_tokens, lengths, cost.flops, cost.dollars, gpu_hours, truncated,
        )
        return out, mean_generated

    def _ratios(self, cfg: Any, cell: Cell) -> None:
        """Planned WC/SE ratios in the unit the budget matches (prompts included, as the summary's
        realised ratio), against the budget's scale; a gap beyond ``tolerance`` is flagged."""
        wc, se = (next(s for s in cell.sampling if s.role == role) for role in SAMPLERS)
        cell.ratios = {
            unit: budget_lib.realised_ratio(_cost(wc), _cost(se), unit) for unit in ("flops", "dollars")
        }
        tol, b, pair = self.a.tolerance, cell.budget, cfg.model_pair
        unit = budget_lib.MATCHED_UNIT.get(b["mode"])
        value = cell.ratios.get(unit) if unit else None
        if value is not None and abs(value / cfg.budget.scale - 1) > tol:
            if unit == "dollars" and pair.wc.price_in_per_mtok:
                why = (f"matched on output prices ({pair.se.price_out_per_mtok / pair.wc.price_out_per_mtok:.1f}x); "
                       f"input prices differ {pair.se.price_in_per_mtok / pair.wc.price_in_per_mtok:.1f}x")
            else:
                why = f"mean generated tokens WC {wc.generated_tokens / wc.requests:.0f}, SE {se.generated_tokens / se.requests:.0f}"
            scale = f" of a {cfg.budget.scale} x budget" if cfg.budget.scale != 1 else ""
            cell.flags.append(f"budget not matched: planned WC/SE {unit} ratio {value:.3f}{scale} ({why})")
        if abs(b["realised_ratio"] / b["nominal_ratio"] - 1) > tol:
            cell.flags.append(
                f"rounding: {b['wc_samples']} WC samples per {b['se_samples']} SE for a nominal "
                f"{b['nominal_ratio'] * b['se_samples']:.2f} ({b['realised_ratio'] / b['nominal_ratio']:.3f} of it)"
            )
        for s in cell.sampling:
            if s.truncated is not None and s.truncated > TRUNCATION_FLAG:
                cell.flags.append(f"{s.truncated:.0%} of the stored {s.role} samples hit sampler.max_new_tokens")
            if s.params is None and s.dollars is None:
                cell.flags.append(f"{s.model}: neither a parameter count nor prices: its cost is not planned")

    # -- finetuning and evaluation ----------------------------------------------------------
    def _prompt_tokens(self, path: str, dataset: Any, render: Any = prompts.zero_shot) -> float:
        """Mean prompt tokens of the train problems, zero-shot (or as ``render`` writes them)."""
        problems: list[Problem] = dataset.splits["train"]
        if not problems:
            return 0.0
        counts, _ = self.counter.counts(path, [render(dataset.cfg.prompt, p) for p in problems])
        return sum(counts) / len(counts)

    def _size(self, cfg: Any, role: str, *, target: bool) -> float | None:
        spec = cfg.model_pair[role]
        path = (spec.target or spec.path) if target else spec.path
        return spec.params if path == spec.path else self.sizes.get(path)

    def _finetune(self, ctx: Any, cfg: Any, arm: str, trained: Any, row: float) -> Finetune:
        t = trained.payload["trainer"]
        role = cfg.setup.target
        params = self._size(cfg, role, target=True)
        gpus = t["nprocs"] * t["nnodes"]
        global_batch = t["per_device_batch_size"] * t["gradient_accumulation_steps"] * gpus
        row_tokens = min(row, t["max_length"])
        tokens = t["max_steps"] * global_batch * row_tokens
        per_token = 4 if t["lora"] else 6  # LoRA: 4 x params + 2 x the (few) adapter weights
        flops = None if params is None else per_token * params * tokens
        cached = ctx.cache.valid(trained.path)
        return Finetune(
            arm, cfg.model_pair[role].target or cfg.model_pair[role].path, str(trained.path), params, t["max_steps"],
            global_batch, row_tokens, tokens, flops, _hours(flops, self.peak, self.a.hardware.train_mfu), gpus, cached,
        )

    def _evaluations(self, cfg: Any, outputs: dict[str, Any], prompt: float, generated: dict[str, float]) -> list[Evaluation]:
        e, datasets = cfg.evaluator, outputs["dataset"]

        def n(split_problems: list[Problem]) -> int:
            return min(len(split_problems), e.limit) if e.limit is not None else len(split_problems)

        main = datasets.main
        test = n(main.splits[e.split]) + (n(datasets.transfer.splits["test"]) if datasets.transfer is not None else 0)
        validation = n(main.splits["validation"])
        target = cfg.setup.target
        mean = generated.get(target, self.a.generated_tokens.get(main.name, 0.0))
        per_generation = prompt + min(mean, e.max_new_tokens)
        evaluation_key = OmegaConf.to_yaml(e) + main.id
        out = []
        for runs in (outputs.get("train") or {}).values():
            scored = (cfg.trainer.checkpoints or (1 if len(runs) > 1 else 0)) if validation else 0  # per rate (wcse.stages.evaluate)
            count = (scored * validation * len(runs) + test) * e.samples
            params = self._size(cfg, target, target=True)
            out.append(self._evaluation(f"arm:{runs[0].path}", f"{target} on {runs[0].arm}", count, per_generation, params))
        few_shot = prompts.template(main.cfg.prompt).shots > 0  # base models: few-shot, and zero-shot beside it
        for role in dict.fromkeys([target, *e.baselines]):
            spec = cfg.model_pair[role]
            path = spec.target or spec.path
            params = self._size(cfg, role, target=True)
            runs = [("", "base", test, per_generation)]
            if few_shot:
                shots = self._prompt_tokens(path, main, prompts.few_shot) + min(mean, e.max_new_tokens)
                runs = [(":few", "base, few-shot", test, shots), ("", "base, zero-shot", n(main.splits[e.split]), per_generation)]
            for suffix, label, count, tokens in runs:
                key = f"base:{path}:{evaluation_key}{suffix}"
                out.append(self._evaluation(key, f"{path} ({label})", count * e.samples, tokens, params))
        return out

    def _evaluation(self, key: str, model: str, generations: int, per_generation: float, params: float | None) -> Evaluation:
        tokens = generations * per_generation
        flops = None if params is None else 2 * params * tokens
        return Evaluation(key, model, generations, tokens, flops, _hours(flops, self.peak, self.a.hardware.sample_mfu))


def _cost(s: Sampling) -> budget_lib.Cost:
    return budget_lib.Cost(s.requests, int(s.prompt_tokens), int(s.generated_tokens), s.flops, s.dollars)


def _prompt_text(request: Any) -> str:
    """What a request sends: its chat turns' contents for a chat API, else the raw prompt."""
    if request.messages is not None:
        return "\n".join(m["content"] for m in request.messages)
    return request.prompt


def totals(cells: list[Cell]) -> dict[str, Any]:
    """The grid's cost, each piece of work counted once: budgets nest (a store's samples for
    the largest budget include the smaller ones), cells share finetunes and base evaluations;
    and what is still to spend given the cache."""
    stores: dict[str, Sampling] = {}
    finetunes: dict[str, Finetune] = {}
    evaluations: dict[str, Evaluation] = {}
    for cell in cells:
        for s in cell.sampling:
            if s.store not in stores or s.requests > stores[s.store].requests:
                stores[s.store] = s
        finetunes.update((f.path, f) for f in cell.finetunes)
        evaluations.update((e.key, e) for e in cell.evaluations)
    sampling, trains, evals = list(stores.values()), list(finetunes.values()), list(evaluations.values())
    to_sample = [s for s in sampling if s.stored < s.requests]
    return {
        "cells": len(cells),
        "failed_cells": sum(c.error is not None for c in cells),
        "samples": sum(s.requests for s in sampling),
        "samples_stored": sum(s.stored for s in sampling),
        "prompt_tokens": sum(s.prompt_tokens for s in sampling),
        "generated_tokens": sum(s.generated_tokens for s in sampling),
        "sampling_flops": _sum(s.flops for s in sampling),
        "sampling_dollars": _sum(s.dollars for s in sampling),
        "sampling_dollars_to_spend": _sum(None if s.dollars is None else s.dollars * (1 - s.stored / s.requests) for s in to_sample),
        "sampling_gpu_hours": _sum(s.gpu_hours for s in sampling),
        "sampling_gpu_hours_to_spend": _sum(
            None if s.gpu_hours is None else s.gpu_hours * (1 - s.stored / s.requests) for s in to_sample
        ),
        "finetunes": len(trains),
        "finetunes_cached": sum(f.cached for f in trains),
        "train_tokens": sum(f.tokens for f in trains),
        "train_flops": _sum(f.flops for f in trains),
        "train_gpu_hours": _sum(f.gpu_hours for f in trains),
        "train_gpu_hours_to_spend": _sum(f.gpu_hours for f in trains if not f.cached),
        "eval_generations": sum(e.generations for e in evals),
        "eval_gpu_hours": _sum(e.gpu_hours for e in evals),
    }
