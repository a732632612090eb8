"""Stage ``sample``: the budget's solutions from WC and SE for every train problem.

The budget fixes the samples per problem (``budget.se_samples`` for SE, the matched count for
WC); each becomes a keyed request with the prompt's few-shot form, and the store generates only
the requests it lacks. A parameter's path to the sampler, in full::

    cfg.budget.se_samples -> settings.plan_budget -> sample.requests (n per problem) -> sampler.generate

:func:`sample_set` and :func:`ensure` take their model and problems as arguments, so later
stages can sample again with other inputs (a finetuned model, a round index).
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from wcse import budget as budget_lib
from wcse.artifacts import MissingArtifact, digest
from wcse.data import prompts
from wcse.records import Problem, Sample
from wcse.roles import SAMPLERS, Models
from wcse.sampling import allocate
from wcse.sampling.backends import in_shard, open_sampler, request_params, sends_messages
from wcse.sampling.store import SampleRequest, SampleStore, ensure_samples
from wcse.settings import plan_budget
from wcse.stages.base import Inputs, RunContext, Stage
from wcse.verify.verifier import verify_samples, verify_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSet:
    """One model's samples of one dataset's train problems: a store and the requests it must hold."""

    role: str
    model_path: str
    attn_implementation: str | None  # how the hf backend loads the model (None: its safe default)
    tensor_parallel_size: int | None  # its vLLM engine's GPUs (None: sampler.tensor_parallel_size)
    store: SampleStore
    requests: tuple[SampleRequest, ...]  # adaptive: every sample the policy may draw (up to its cap)
    per_problem: int  # adaptive: the uniform count whose total it spends
    policy: allocate.Policy | None = None  # adaptive allocation (None: every request, uniform)
    allocation: Path | None = None  # adaptive: <cache>/sample/<key>/, the keys the policy drew

    def chosen(self) -> list[str] | None:
        """The keys of the samples this set holds, in order (None: an allocation not yet run)."""
        if self.allocation is None:
            return [r.key for r in self.requests]
        path = self.allocation / "chosen.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def identity(self) -> Any:
        """What downstream cache keys call this set: its keys, or the allocation that draws them."""
        return [r.key for r in self.requests] if self.allocation is None else {"allocation": self.allocation.name}

    def absent(self) -> int:
        keys = self.chosen()
        return self.policy.budget if keys is None else len(set(keys) - self.store.keys())

    def load(self) -> list[Sample]:
        """The samples, in order (an error names a missing one)."""
        keys = self.chosen()
        if keys is None:
            raise MissingArtifact(f"the {self.role} allocation at {self.allocation} has not run: add 'sample' to stages")
        return self.store.select(keys)


@dataclass(frozen=True)
class Samples:
    budget: budget_lib.SampleBudget
    sets: dict[str, SampleSet]  # by sampler role


def sampling_params(cfg: Any, prompt_id: str, role: str, attn_implementation: str | None = None) -> dict[str, Any]:
    """Everything that decides a sample besides its model, problem and seed: the key records it.
    An explicit attention implementation is part of it (absent by default, so keys stay).
    ``sampler.role_temperature`` gives one role its own temperature (SE hotter at equal compute)."""
    s = cfg.sampler
    return {
        "temperature": s.role_temperature.get(role, s.temperature),
        "top_p": s.top_p,
        "max_new_tokens": s.max_new_tokens,
        "prompt": prompts.template(prompt_id).version,
        **prompts.stop_params(prompt_id),
        **request_params(s),
        **({"attn_implementation": attn_implementation} if attn_implementation else {}),
    }


def sample_set(
    ctx: RunContext,
    role: str,
    model_path: str,
    model_id: str,
    dataset: Any,
    problems: list[Problem],
    n: int,
    spec: Any = None,
) -> SampleSet:
    """The requests for ``n`` few-shot samples per problem from one model, and the store they go to.

    ``spec`` is the model's ``model_pair`` entry (its attention and vLLM engine width), if any."""
    cfg, prompt_id = ctx.cfg, dataset.cfg.prompt
    attn_implementation = spec.attn_implementation if spec is not None else None
    params = sampling_params(cfg, prompt_id, role, attn_implementation)
    store = SampleStore(
        ctx.cache.root / "samples" / digest({"model": model_id, "dataset": dataset.id, "params": params}),
        lock_timeout_s=ctx.cache.lock_timeout_s,
    )
    chat, base_seed = sends_messages(cfg.sampler), cfg.sampler.seed  # read once: config access is slow per request
    requests = tuple(
        SampleRequest.create(
            model=model_id,
            dataset=dataset.id,
            problem_id=p.id,
            index=j,
            prompt=prompt,
            params=params,
            base_seed=base_seed,
            messages=prompts.messages(prompt_id, p, few_shot=True, system=params.get("system")) if chat else None,
        )
        for p in problems
        for prompt in [prompts.few_shot(prompt_id, p)]  # once per problem
        for j in range(n)
    )
    tensor_parallel_size = spec.tensor_parallel_size if spec is not None else None
    b = cfg.budget
    if b.allocation == "uniform":
        return SampleSet(role, model_path, attn_implementation, tensor_parallel_size, store, requests, n)
    cap = b.max_per_problem or 4 * n
    policy = allocate.Policy(b.allocation, budget=n * len(problems), cap=cap, k=b.stop_k, probe=b.probe_samples)
    candidates = tuple(
        SampleRequest.create(
            model=model_id, dataset=dataset.id, problem_id=r.problem_id, index=j, prompt=r.prompt, params=params,
            base_seed=base_seed, messages=r.messages,
        )
        for r in requests[::n]  # one request per problem carries its prompt
        for j in range(cap)
    )
    allocation = ctx.cache.path("sample", _allocation_payload(policy, store, [p.id for p in problems]))
    return SampleSet(role, model_path, attn_implementation, tensor_parallel_size, store, candidates, n, policy, allocation)


def _allocation_payload(policy: allocate.Policy, store: SampleStore, problem_ids: list[str]) -> dict[str, Any]:
    return {"policy": asdict(policy), "store": store.root.name, "problems": problem_ids}


def _allocate(ctx: RunContext, samples: SampleSet, dataset: Any, s: Any) -> list[Sample]:
    """Run an adaptive policy wave by wave with sampler settings ``s``: draw, verify against the
    ground truth, draw again. The waves are deterministic given the store, so a rerun redraws
    nothing it already holds."""
    v = ctx.cfg.verifier
    by_slot = {(r.problem_id, r.index): r for r in samples.requests}
    problems = dataset.by_id("train")
    problem_ids = list(dict.fromkeys(r.problem_id for r in samples.requests))

    def build(out: Path) -> None:
        correct: dict[tuple[str, int], bool] = {}
        chosen: list[str] = []
        with ExitStack() as stack:
            sampler = None
            for number, wave in enumerate(allocate.waves(samples.policy, problem_ids, correct)):
                requests = [by_slot[slot] for slot in wave]
                if sampler is None and not {r.key for r in requests} <= samples.store.keys():
                    sampler = stack.enter_context(
                        open_sampler(s, samples.model_path, batch_size=s.batch_size, attn_implementation=samples.attn_implementation)
                    )
                drawn = ensure_samples(samples.store, sampler, requests, desc=f"sample {samples.role} wave {number}") if sampler else samples.store.select([r.key for r in requests])
                verdicts = verify_samples(dataset.cfg.format, problems, drawn, v.mode, desc=f"verify {samples.role} wave {number}", **verify_settings(ctx.cfg))
                correct.update({(x.problem_id, x.index): x.correct for x in verdicts})
                chosen += [r.key for r in requests]
        (out / "chosen.json").write_text(json.dumps(chosen))
        log.info("sample [%s]: %s drew %d of %d samples", samples.role, samples.policy.name, len(chosen), samples.policy.budget)

    payload = _allocation_payload(samples.policy, samples.store, problem_ids)
    ctx.cache.get_or_build("sample", payload, build, label=f"{samples.role} allocation")
    return samples.load()


def ensure(ctx: RunContext, samples: SampleSet, dataset: Any, *, shard_only: bool = False) -> list[Sample]:
    """Generate what the store lacks; with ``shard_only``, only this data-parallel job's slice
    (``sampler.shard``): the jobs share one store, and a later unsharded run finds every sample.
    An adaptive set draws wave by wave, verified against ``dataset``'s train answers."""
    s = ctx.cfg.sampler
    if samples.tensor_parallel_size is not None:
        s = OmegaConf.merge(s, {"tensor_parallel_size": samples.tensor_parallel_size})
    if samples.policy is not None:
        if s.shard.count > 1:
            raise MissingArtifact("budget.allocation: an adaptive policy reads every wave's verdicts; run it with sampler.shard.count=1")
        return _allocate(ctx, samples, dataset, s)
    requests = list(samples.requests)
    if shard_only and s.shard.count > 1:
        requests = [r for r in requests if in_shard(r.problem_id, s.shard.index, s.shard.count)]
        log.info("sample [%s]: data-parallel shard %d of %d: %d requests", samples.role, s.shard.index, s.shard.count, len(requests))
    if {r.key for r in requests} <= samples.store.keys():
        return samples.store.select([r.key for r in requests])
    with open_sampler(s, samples.model_path, batch_size=s.batch_size, attn_implementation=samples.attn_implementation) as sampler:
        return ensure_samples(samples.store, sampler, requests, desc=f"sample {samples.role}")


def plan(ctx: RunContext, inputs: Inputs) -> Samples:
    models: Models = inputs["pretrain"]
    dataset = inputs["dataset"].main
    budget, pool = plan_budget(ctx.cfg), dataset.splits["train"]
    b = ctx.cfg.budget
    spread = budget_lib.spread(budget, b.problems or len(pool), len(pool), b.wc_spend)
    return Samples(
        budget,
        {
            role: sample_set(
                ctx, role, models.path(role), models.id(role), dataset, pool[: spread[role][0]], spread[role][1],
                models.spec(role),
            )
            for role in SAMPLERS
        },
    )


def missing(ctx: RunContext, samples: Samples) -> list[str]:
    return [
        f"{s.absent()} of {len(s.requests)} {role} samples in {s.store.root}"
        for role, s in samples.sets.items()
        if s.absent()
    ]


def build(ctx: RunContext, inputs: Inputs, samples: Samples) -> dict[str, Any]:
    pair, out = ctx.cfg.model_pair, {}
    costs = {}
    for role, sample_set_ in samples.sets.items():
        done = ensure(ctx, sample_set_, inputs["dataset"].main, shard_only=True)
        costs[role] = budget_lib.realised_cost(
            done,
            params=pair[role].params,
            price_in_per_mtok=pair[role].price_in_per_mtok,
            price_out_per_mtok=pair[role].price_out_per_mtok,
        )
        out[role] = {
            "samples_per_problem": sample_set_.per_problem,
            "problems": len({r.problem_id for r in sample_set_.requests}),
            **({"allocation": sample_set_.policy.name} if sample_set_.policy else {}),
            "store": str(sample_set_.store.root),
            **costs[role].to_dict(),
            "truncation_rate": sum(not s.finished for s in done) / max(1, len(done)),
        }
    return {
        "sampling": {
            "budget": samples.budget.to_dict(),
            "models": out,
            "realised_flops_ratio_wc_over_se": budget_lib.realised_ratio(costs["wc"], costs["se"], "flops"),
            "realised_dollar_ratio_wc_over_se": budget_lib.realised_ratio(costs["wc"], costs["se"], "dollars"),
        }
    }


STAGE = Stage(
    name="sample",
    needs=("pretrain", "dataset"),
    output="the budget's WC and SE samples of every train problem: `<cache>/samples/<key>/shard-*.jsonl`",
    plan=plan,
    build=build,
    missing=missing,
    how="add 'sample' to stages (sharded runs: every shard's sample stage first, then the rest with sampler.shard.count=1)",
)
