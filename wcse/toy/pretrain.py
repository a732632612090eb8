"""Pretrain the toy ladder (Student < WC < SE) on a corpus the toy world generates.

This is the recipe behind the shipped checkpoints: ``python -m wcse.main stages=[pretrain]``
(``toy.publish=true`` copies the result into the package, with each model's ``pretrain.json``:
command, seed, time, steps, tokens and measured test pass@1, few-shot and zero-shot). The corpus
is documents (:mod:`wcse.toy.corpus`): runs of solved problems in a house style, some with a
slip, problem statements and arithmetic facts, with the loss on every token, as a base LLM is
pretrained; test and validation problems cannot occur in it (the world's splits are disjoint by
construction). Models differ in size and in training steps: a larger model is slower per
token, so it gets more steps or it would end up weaker than the smaller one; the Student is the
WC's shape with a third of its steps (an older, weaker model, not a much smaller one: the
paper's Gemma-7B beside Gemma2-9B).
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers

from wcse.evaluate import Evaluator
from wcse.toy import corpus, ladder
from wcse.toy.tokenizer import build_tokenizer
from wcse.train.launch import run_training
from wcse.train.spec import TrainSpec

log = logging.getLogger(__name__)

RECIPE_VERSION = 2  # bump when the corpus or the training recipe changes: it is part of the cache key


def write_corpus(path: Path, size: int, seed: int) -> None:
    """``size`` documents as trainer rows: no prompt, so every token but BOS is learned."""
    with open(path, "w", encoding="utf-8") as fh:
        for document in corpus.documents(size, seed):
            fh.write(json.dumps({"prompt": "", "completion": document.text}) + "\n")


def pretrain_model(toy: Any, role: str, out: Path, evaluator: Evaluator) -> None:
    """Train one rung of the ladder into ``out``, measure its pass@1, write ``out/pretrain.json``.

    Each rung is its own artifact, so retuning one model's recipe retrains only that model.
    """
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"wcse-pretrain-{role}-"))
    try:
        tokenizer = build_tokenizer()
        tokenizer.save_pretrained(work / "tokenizer")
        documents = work / "corpus.jsonl"
        write_corpus(documents, toy.corpus_size, toy.seed)
        m = toy.models[role]
        config = ladder.llama_config(
            tokenizer, hidden_size=m.hidden_size, num_hidden_layers=m.num_hidden_layers, intermediate_size=m.intermediate_size
        )
        log.info("pretraining %s: %d parameters, %d steps on %d documents", role, ladder.param_count(config), m.max_steps, toy.corpus_size)
        spec = TrainSpec(
            output_dir=str(work / "run"),
            data_path=str(documents),
            init_config=config,
            tokenizer_path=str(work / "tokenizer"),
            max_steps=m.max_steps,
            per_device_batch_size=toy.batch_size,
            learning_rate=m.learning_rate,
            lr_scheduler="cosine",
            warmup_ratio=0.05,
            weight_decay=0.01,
            seed=toy.seed,
            max_length=ladder.MAX_POSITIONS,
        )
        metrics = run_training(spec, log_path=work / "train.log")
        for f in (work / "run" / "model").iterdir():
            shutil.move(f, out / f.name)
        split = evaluator.cfg.evaluator.split
        few = evaluator.score(str(out), f"pretrain@{out.name}", work / "eval-few", split, few_shot=True)
        zero = evaluator.score(str(out), f"pretrain@{out.name}", work / "eval-zero", split)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "role": role,
        "command": " ".join([Path(sys.executable).name, "-m", "wcse.main", *sys.argv[1:]]),
        "seed": toy.seed,
        "corpus_size": toy.corpus_size,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        + ("cuda" if torch.cuda.is_available() else "cpu"),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "params": ladder.param_count(config),
        "config": {k: m[k] for k in ("hidden_size", "num_hidden_layers", "intermediate_size", "learning_rate")},
        "steps": metrics["steps"],
        "train_seconds": metrics["train_seconds"],
        "train_tokens": metrics["train_tokens"],
        "final_loss": metrics["train_loss"],
        "seconds": round(time.perf_counter() - start, 1),
        "few_shot": _scores(few),
        "zero_shot": _scores(zero),
    }
    (out / "pretrain.json").write_text(json.dumps(record, indent=1))
    log.info("%s: %s pass@1 %.3f few-shot, %.3f zero-shot, on %d problems", role, split, few["pass@1"], zero["pass@1"], few["n_problems"])


def _scores(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("pass@1", "pass@1_interval", "per_level", "fpr", "status")}
