"""The run's LLM judge as a service: the stages that need judgements get this object.

It owns what a judgement depends on (the judge's weights, prompt and decoding), where
judgements are kept (a sample store per judged dataset: cached and resumable), and the judge's
engine, which starts only when a judgement is missing. The verify stage asks it for label-free
decisions (an "answer" judge), the metrics and evaluate stages for the step-level FPR of correct
samples on real data (a "steps" judge); the toy world's FPR is exact and never asks.
"""

from __future__ import annotations

import logging
import random
from functools import cached_property
from pathlib import Path
from typing import Any

from wcse.artifacts import digest
from wcse.records import Problem, Sample, Verdict
from wcse.roles import Models
from wcse.sampling.backends import open_sampler, request_params, sends_messages
from wcse.sampling.store import SampleStore
from wcse.verify import judge as judge_lib

log = logging.getLogger(__name__)


class Judge:
    """The configured judge (``verifier.judge``) of one run."""

    def __init__(self, cfg: Any, models: Models, cache_root: Path) -> None:
        self.cfg = cfg
        self.spec = cfg.verifier.judge
        self.path = models.resolve(self.spec.path)
        self.cache_root = cache_root
        s = self.spec.sampler
        self.identity = {
            "model": f"{self.spec.name}@{models.fingerprint(self.spec.path)}",
            "prompt": judge_lib.template(self.spec.prompt).version,
            "chat": self.spec.chat,
            "params": {"temperature": s.temperature, "top_p": s.top_p, "max_new_tokens": s.max_new_tokens, **request_params(s)},
        }
        self._stores: dict[str, SampleStore] = {}

    @property
    def judges_steps(self) -> bool:
        """Whether a "steps" judge checks the reasoning behind correct answers (data and eval FPR)."""
        return self.cfg.verifier.method != "judge"

    @cached_property
    def chat_template(self) -> judge_lib.ChatTemplate | None:
        """The judge's chat template, rendered here unless its API applies it (chat messages)."""
        if not self.spec.chat or sends_messages(self.spec.sampler):
            return None
        return judge_lib.ChatTemplate(self.path)

    def store(self, dataset_id: str) -> SampleStore:
        """One store per judged dataset, so its shards are parsed once per run."""
        if dataset_id not in self._stores:
            key = digest({"model": self.identity["model"], "dataset": dataset_id})
            self._stores[dataset_id] = SampleStore(
                self.cache_root / "judgements" / key, lock_timeout_s=self.cfg.paths.lock_timeout_s
            )
        return self._stores[dataset_id]

    def judge(self, samples: list[Sample], problems: dict[str, Problem], dataset_id: str) -> dict[str, judge_lib.Judgement]:
        """The judge's verdicts on ``samples``; a rerun judges only what is missing."""
        s, store = self.spec.sampler, self.store(dataset_id)
        log.info("judge %s (%s prompt) on %d samples; judgements in %s", self.spec.name, self.spec.prompt, len(samples), store.root)
        requests = judge_lib.judge_requests(
            self.spec.prompt, self.identity["model"], dataset_id, problems, samples, self.identity["params"], s.seed,
            chat=self.chat_template,
        )
        return judge_lib.judge_samples(
            lambda: open_sampler(s, self.path, batch_size=s.batch_size),
            store,
            samples,
            requests,
        )

    def steps(self, samples: list[Sample], verdicts: list[Verdict], problems: dict[str, Problem], dataset_id: str) -> list[Verdict]:
        """Step-level FPR on real data: a seeded subset (``verifier.judge.max_samples``) of the
        correct samples whose reasoning no exact checker covers goes to the "steps" judge."""
        unchecked = sorted(v.key for v in verdicts if v.correct and v.steps_correct is None)
        limit = self.spec.max_samples
        if limit is not None and len(unchecked) > limit:
            unchecked = sorted(random.Random(self.cfg.seed).sample(unchecked, limit))
        if not unchecked:
            return verdicts
        chosen = set(unchecked)
        return judge_lib.apply_step_judgements(verdicts, self.judge([s for s in samples if s.key in chosen], problems, dataset_id))


def run_judge(ctx: Any, models: Models) -> Judge | None:
    """The run's judge (made once per run), or None when none is configured."""
    if ctx.cfg.verifier.judge is None:
        return None
    return ctx.service("judge", lambda: Judge(ctx.cfg, models, ctx.cache.root))
