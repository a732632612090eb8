"""One run of the method: stages in order, each reading upstream artifacts and writing its own.

    dataset -> sample (WC, SE) -> verify/filter -> metrics -> train (target x arm) -> evaluate -> report

Every artifact is keyed by the content it depends on (wcse.artifacts), so a stage whose inputs
did not change is skipped, a sweep over setup x budget reuses the samples, and
``stages=[...]`` can run any subset as long as the upstream artifacts exist. Samples live in an
append-only store per (model, dataset, prompt, sampling parameters): the low budget's samples
are the first ones of the high budget's, so raising the budget only generates the difference.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections import Counter
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wcse import budget as budget_lib
from wcse import models
from wcse.artifacts import Cache, MissingArtifact, digest, file_sha256
from wcse.config import STAGES, plan_budget, train_settings
from wcse.data import prompts
from wcse.data.registry import SPLITS, load_problems
from wcse.evaluate import eval_requests, evaluate
from wcse.metrics import data_metrics, per_problem
from wcse.records import Problem, Sample, Verdict, read_jsonl, write_jsonl
from wcse.sampling.backends import in_shard, open_sampler
from wcse.sampling.store import SampleRequest, SampleStore, ensure_samples
from wcse.toy import ladder
from wcse.train import arms
from wcse.train.launch import run_training
from wcse.train.sft import TrainSpec
from wcse.verify import judge as judge_lib
from wcse.verify.verifier import verify_samples

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


class Pipeline:
    """The stages of one configured run; ``run()`` executes those named in ``cfg.stages``."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        # The dataset and an arm's data are cheap and deterministic: any stage may build them.
        self.cache = Cache(cfg.paths.cache_dir, allowed={*cfg.stages, "dataset", "arm"})
        self.run_dir = Path(cfg.paths.run_dir)
        self.timing: dict[str, float] = {}

    # ----------------------------------------------------------------- orchestration
    def run(self) -> dict[str, Any]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log.info("run directory: %s | cache: %s", self.run_dir, self.cache.root)
        summary: dict[str, Any] = {}
        for stage in STAGES:
            if stage in self.cfg.stages:
                start = time.perf_counter()
                log.info("=== stage %s", stage)
                result = getattr(self, f"stage_{stage}")()
                if result:
                    summary.update(result)
                self.timing[stage] = round(time.perf_counter() - start, 2)
        summary["timing_seconds"] = self.timing
        summary["artifacts"] = self.cache.events
        self._write_summary(summary)
        return summary

    def _write_summary(self, summary: dict[str, Any]) -> None:
        path = self.run_dir / "summary.json"
        path.write_text(json.dumps(summary, indent=2, sort_keys=False, default=str))
        log.info("summary -> %s", path)

    # ----------------------------------------------------------------- models
    @cached_property
    def is_toy(self) -> bool:
        return any(
            self.cfg.model_pair[r].path.startswith(models.TOY_PREFIX) for r in ("wc", "se", "student")
        )

    @cached_property
    def ladder(self) -> dict[str, Path]:
        """The toy checkpoints in use: rebuilt ones when asked for, else the shipped ones."""
        if self.cfg.toy.pretrain or "pretrain" in self.cfg.stages:
            return {role: self.pretrained(role) for role in ladder.ROLES}
        return {role: ladder.SHIPPED / role for role in ladder.ROLES}

    @cache  # noqa: B019 - one Pipeline per run; hashing weights once per run is the point
    def model_path(self, role: str, *, target: bool = False) -> str:
        spec = self.cfg.model_pair[role]
        path = (spec.target or spec.path) if target else spec.path
        return models.resolve(path, self.ladder)

    @cache  # noqa: B019
    def model_id(self, role: str, *, target: bool = False) -> str:
        """Name plus content fingerprint: cache keys change when the weights do."""
        path = self.model_path(role, target=target)
        return f"{self.cfg.model_pair[role].name}@{models.fingerprint(path)}"

    # ----------------------------------------------------------------- pretrain (toy)
    def stage_pretrain(self) -> dict[str, Any]:
        if not self.is_toy:
            raise ValueError(f"stages: 'pretrain' builds the toy ladder; model_pair={self.cfg.model_pair.name} is not toy")
        records = {role: json.loads((path / "pretrain.json").read_text()) for role, path in self.ladder.items()}
        if self.cfg.toy.publish:
            for role, path in self.ladder.items():
                shutil.rmtree(ladder.SHIPPED / role, ignore_errors=True)
                shutil.copytree(path, ladder.SHIPPED / role, ignore=shutil.ignore_patterns("manifest.json", "training_args.bin"))
            log.info("published the rebuilt ladder to %s", ladder.SHIPPED)
        return {"pretrain": records}

    def pretrained(self, role: str) -> Path:
        """One rung of the ladder, pretrained by wcse.toy.pretrain (cached by its recipe)."""
        from wcse.toy.pretrain import RECIPE_VERSION, pretrain_model

        toy = _plain(self.cfg.toy)
        payload = {k: toy[k] for k in ("corpus_size", "batch_size", "seed")}
        payload |= {
            "role": role,
            "model": toy["models"][role],
            "recipe": RECIPE_VERSION,
            # where its pass@1 is measured: the test split and the evaluator, not the whole dataset
            "test": digest([p.id for p in self.problems[self.cfg.evaluator.split]]),
            "evaluator": _plain(self.cfg.evaluator),
        }
        return self.cache.get_or_build(
            "pretrain",
            payload,
            lambda out: pretrain_model(self.cfg.toy, role, out, self._evaluate_ladder),
            label=f"toy {role}",
        )

    def _evaluate_ladder(self, model_dir: Path, out_dir: Path) -> dict[str, Any]:
        return self._evaluate_path(str(model_dir), f"pretrain@{model_dir.name}", out_dir)

    # ----------------------------------------------------------------- dataset
    def stage_dataset(self) -> dict[str, Any]:
        out = {"dataset": {split: len(self.problems[split]) for split in SPLITS}}
        if self.cfg.transfer is not None:
            out["transfer"] = {"name": self.cfg.transfer.name, "test": len(self.problems_of("transfer")["test"])}
        return out

    @cache  # noqa: B019 - hashes the dataset's files once per run
    def dataset_key(self, group: str = "dataset") -> str:
        """Content key of a dataset (``group``: "dataset", or "transfer" for the transfer set):
        its config plus the bytes of any local files it reads."""
        cfg = _plain(self.cfg[group])
        files = {}
        for split in SPLITS:
            source = cfg.get(split) or {}
            if source.get("path") and Path(source["path"]).is_file():
                files[split] = file_sha256(Path(source["path"]))
        return digest({"dataset": cfg, "files": files})

    @cache  # noqa: B019
    def problems_of(self, group: str = "dataset") -> dict[str, list[Problem]]:
        def build(out: Path) -> None:
            for split, problems in load_problems(self.cfg[group]).items():
                write_jsonl(out / f"{split}.jsonl", problems)

        path = self.cache.get_or_build("dataset", {"key": self.dataset_key(group)}, build, label=self.cfg[group].name)
        return {s: list(read_jsonl(path / f"{s}.jsonl", Problem)) for s in SPLITS}

    def id_of(self, group: str = "dataset") -> str:
        """What cache keys and sample records call the dataset: its name and content key."""
        return f"{self.cfg[group].name}@{self.dataset_key(group)}"

    @property
    def problems(self) -> dict[str, list[Problem]]:
        return self.problems_of("dataset")

    @property
    def dataset_id(self) -> str:
        return self.id_of("dataset")

    # ----------------------------------------------------------------- budget + sampling
    @cached_property
    def budget(self) -> budget_lib.SampleBudget:
        return plan_budget(self.cfg)

    def n_samples(self, role: str) -> int:
        return self.budget.wc_samples if role == "wc" else self.budget.se_samples

    @cached_property
    def sampling_params(self) -> dict[str, Any]:
        s = self.cfg.sampler
        return {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_new_tokens": s.max_new_tokens,
            "prompt": prompts.template(self.cfg.dataset.prompt).version,
        }

    @cache  # noqa: B019 - one store object per role: each shard is parsed once per run
    def store(self, role: str) -> SampleStore:
        key = digest({"model": self.model_id(role), "dataset": self.dataset_id, "params": self.sampling_params})
        return SampleStore(self.cache.root / "samples" / key)

    @cache  # noqa: B019
    def requests(self, role: str) -> list[SampleRequest]:
        train = self.problems["train"]
        prompt_of = {p.id: prompts.few_shot(self.cfg.dataset.prompt, p) for p in train}  # once per problem
        return [
            SampleRequest.create(
                model=self.model_id(role),
                dataset=self.dataset_id,
                problem_id=p.id,
                index=j,
                prompt=prompt_of[p.id],
                params=self.sampling_params,
                base_seed=self.cfg.sampler.seed,
            )
            for p in train
            for j in range(self.n_samples(role))
        ]

    def samples(self, role: str, *, shard_only: bool = False) -> list[Sample]:
        """The budget's samples of ``role``: generated now only where the store lacks them.

        With ``shard_only``, only this data-parallel job's slice of problems is generated and
        returned; the jobs share one store, and a later unsharded run finds every sample there.
        """
        store, requests = self.store(role), self.requests(role)
        shard = self.cfg.sampler.shard
        if shard_only and shard.count > 1:
            requests = [r for r in requests if in_shard(r.problem_id, shard.index, shard.count)]
            log.info("sample [%s]: data-parallel shard %d of %d: %d requests", role, shard.index, shard.count, len(requests))
        missing = len({r.key for r in requests} - store.keys())
        if not missing:
            return store.select([r.key for r in requests])
        if "sample" not in self.cfg.stages or (shard.count > 1 and not shard_only):
            raise MissingArtifact(
                f"sample [{role}]: {missing} of {len(requests)} samples are not in {store.root}; "
                + ("run every shard's sample stage first, then the later stages with sampler.shard.count=1"
                   if shard.count > 1 else "stage 'sample' is not in `stages`")
            )
        s = self.cfg.sampler
        with open_sampler(
            s, self.model_path(role), temperature=s.temperature, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size
        ) as sampler:
            return ensure_samples(store, sampler, requests, desc=f"sample {role}")

    def stage_sample(self) -> dict[str, Any]:
        pair, out = self.cfg.model_pair, {}
        for role in ("wc", "se"):
            samples = self.samples(role, shard_only=True)
            cost = budget_lib.realised_cost(
                samples,
                params=pair[role].params or 0,
                price_in_per_mtok=pair[role].price_in_per_mtok,
                price_out_per_mtok=pair[role].price_out_per_mtok,
            )
            out[role] = {"samples_per_problem": self.n_samples(role), "store": str(self.store(role).root), **cost.to_dict()}
        se_flops, se_dollars = out["se"]["flops"], out["se"]["dollars"]
        return {
            "budget": self.budget.to_dict(),
            "sampling": out,
            "realised_flops_ratio_wc_over_se": out["wc"]["flops"] / se_flops if se_flops else None,
            "realised_dollar_ratio_wc_over_se": out["wc"]["dollars"] / se_dollars if se_dollars else None,
        }

    # ----------------------------------------------------------------- verify / filter
    @cached_property
    def verify_settings(self) -> dict[str, Any]:
        """How the verifier pool runs (not what it decides): processes, time limit, chunking."""
        v = self.cfg.verifier
        return {"workers": v.workers, "timeout_s": v.timeout_s, "chunk_size": v.chunk_size}

    @cache  # noqa: B019 - validated (hashed) once per run, however many stages read it
    def verified(self, role: str) -> Path:
        """Ground-truth verdicts for the budget's samples, and the SFT data the filter keeps.

        The verdicts always come from the ground truth (the data metrics need them); what is
        kept depends on ``verifier.method``: the correct samples (``answer``), those an LLM judge
        accepts without seeing the ground truth (``judge``, label-free), or every sample (``none``).
        """
        v = self.cfg.verifier
        payload = {
            "samples": [r.key for r in self.requests(role)],
            "method": v.method,
            "mode": v.mode,
            "timeout_s": v.timeout_s,
            "judge": self.judge_identity if v.method == "judge" else None,
            "v": 2,
        }

        def build(out: Path) -> None:
            samples = self.samples(role)
            problems = {p.id: p for p in self.problems["train"]}
            verdicts = verify_samples(
                self.cfg.dataset.format, problems, samples, v.mode, desc=f"verify {role}", **self.verify_settings
            )
            write_jsonl(out / "verdicts.jsonl", verdicts)
            if v.method == "judge":
                judged = judge_lib.label_free_verdicts(samples, self.judge(samples, problems, self.dataset_id))
                write_jsonl(out / "judged.jsonl", judged)
                keep = [verdict.correct for verdict in judged]
            else:
                keep = [v.method == "none" or verdict.correct for verdict in verdicts]
            kept = [
                {"prompt": prompts.zero_shot(self.cfg.dataset.prompt, problems[s.problem_id]), "completion": " " + s.text.strip(), "problem_id": s.problem_id}
                for s, k in zip(samples, keep, strict=True)
                if k
            ]
            with open(out / "sft.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in kept)

        return self.cache.get_or_build("verify", {"key": digest(payload)}, build, label=role)

    def verdicts(self, role: str) -> list[Verdict]:
        return list(read_jsonl(self.verified(role) / "verdicts.jsonl", Verdict))

    def stage_verify(self) -> dict[str, Any]:
        out = {}
        for role in ("wc", "se"):
            verdicts = self.verdicts(role)
            with open(self.verified(role) / "sft.jsonl", encoding="utf-8") as fh:
                kept = sum(1 for _ in fh)
            out[role] = {
                "verified": len(verdicts),
                "correct": sum(v.correct for v in verdicts),
                "kept_for_training": kept,
                "status": dict(sorted(Counter(v.status for v in verdicts).items())),
            }
            judged = self.verified(role) / "judged.jsonl"
            if judged.is_file():  # label-free: how often the judge kept a wrong sample / dropped a right one
                accepted = [j.correct for j in read_jsonl(judged, Verdict)]
                truth = [v.correct for v in verdicts]
                out[role]["judge"] = {
                    "kept_wrong": sum(a and not t for a, t in zip(accepted, truth, strict=True)),
                    "dropped_right": sum(t and not a for a, t in zip(accepted, truth, strict=True)),
                }
        return {"filter": {"method": self.cfg.verifier.method, "mode": self.cfg.verifier.mode, **out}}

    # ----------------------------------------------------------------- data metrics
    def stage_metrics(self) -> dict[str, Any]:
        train = self.problems["train"]
        groups = {"level": {p.id: p.level for p in train}, "subject": {p.id: p.subject for p in train}}
        problem_of = {p.id: p for p in train}
        rules = list(self.cfg.verifier.diversity_rules)
        table_dir = self.run_dir / "metrics"
        out = {}
        for role in ("wc", "se"):
            samples, verdicts = self.samples(role), self.verdicts(role)
            if self.judges_steps:
                verdicts = self.judge_steps(samples, verdicts, problem_of, self.dataset_id)
            k = self.n_samples(role)
            out[role] = data_metrics(samples, verdicts, k, groups=groups, rules=rules)
            table = table_dir / f"{role}.problems.jsonl"
            write_jsonl(table, per_problem(samples, verdicts, k, rules=rules))
            out[role]["per_problem_table"] = str(table)
            log.info("metrics [%s]: per-problem table -> %s", role, table)
        return {"data": out}

    # ----------------------------------------------------------------- LLM judge
    @cached_property
    def judge_path(self) -> str:
        return models.resolve(self.cfg.verifier.judge.path, self.ladder)

    @cached_property
    def judge_identity(self) -> dict[str, Any]:
        """What a judgement depends on: the judge's weights, prompt and decoding (not its engine)."""
        j = self.cfg.verifier.judge
        return {
            "model": f"{j.name}@{models.fingerprint(self.judge_path)}",
            "prompt": judge_lib.template(j.prompt).version,
            "chat": j.chat,
            "params": {"temperature": j.sampler.temperature, "top_p": j.sampler.top_p, "max_new_tokens": j.sampler.max_new_tokens},
        }

    @property
    def judges_steps(self) -> bool:
        """Whether a "steps" judge checks the reasoning behind correct answers (data and eval FPR)."""
        return self.cfg.verifier.judge is not None and self.cfg.verifier.method != "judge"

    @cache  # noqa: B019 - one store object per dataset, so its shards are parsed once per run
    def judge_store(self, dataset_id: str) -> SampleStore:
        key = digest({"model": self.judge_identity["model"], "dataset": dataset_id})
        return SampleStore(self.cache.root / "judgements" / key)

    @cached_property
    def judge_chat(self) -> judge_lib.ChatTemplate | None:
        return judge_lib.ChatTemplate(self.judge_path) if self.cfg.verifier.judge.chat else None

    def judge(self, samples: list[Sample], problems: dict[str, Problem], dataset_id: str) -> dict[str, judge_lib.Judgement]:
        """The configured judge's verdicts on ``samples``, kept in a store like samples: a rerun
        judges only what is missing, and the judge's engine starts only if something is."""
        j, ident = self.cfg.verifier.judge, self.judge_identity
        s = j.sampler
        store = self.judge_store(dataset_id)
        log.info("judge %s (%s prompt) on %d samples; judgements in %s", j.name, j.prompt, len(samples), store.root)
        requests = judge_lib.judge_requests(
            j.prompt, ident["model"], dataset_id, problems, samples, ident["params"], s.seed, chat=self.judge_chat
        )
        return judge_lib.judge_samples(
            lambda: open_sampler(s, self.judge_path, temperature=s.temperature, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size),
            store,
            samples,
            requests,
        )

    def judge_steps(
        self, samples: list[Sample], verdicts: list[Verdict], problems: dict[str, Problem], dataset_id: str
    ) -> list[Verdict]:
        """Step-level FPR on real data: a seeded subset of the correct samples whose reasoning no
        exact checker covers (the toy world's is exact) goes to the "steps" judge."""
        unchecked = sorted(v.key for v in verdicts if v.correct and v.steps_correct is None)
        limit = self.cfg.verifier.judge.max_samples
        if limit is not None and len(unchecked) > limit:
            unchecked = sorted(random.Random(self.cfg.seed).sample(unchecked, limit))
        if not unchecked:
            return verdicts
        chosen = set(unchecked)
        return judge_lib.apply_step_judgements(
            verdicts, self.judge([s for s in samples if s.key in chosen], problems, dataset_id)
        )

    # ----------------------------------------------------------------- finetune
    @cache  # noqa: B019
    def arm_data(self, arm: str) -> Path:
        """The SFT rows of a data arm (wc, se, mix, wc_one, se_one) from the filtered sets it reads."""
        sources = arms.arm_sources(arm)
        setup = self.cfg.setup
        payload = {"arm": arm, "filtered": {s: self.verified(s).name for s in sources}, "seed": self.cfg.seed}
        if arm == "mix":
            payload["mix_wc_fraction"] = setup.mix_wc_fraction

        def build(out: Path) -> None:
            rows = {s: [json.loads(line) for line in open(self.verified(s) / "sft.jsonl", encoding="utf-8")] for s in sources}
            data = arms.build_arm(arm, rows, mix_wc_fraction=setup.mix_wc_fraction, seed=self.cfg.seed)
            with open(out / "sft.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in data)
            counts = dict(sorted(Counter(row["source"] for row in data).items()))
            (out / "composition.json").write_text(json.dumps({"rows": len(data), "by_source": counts}))

        return self.cache.get_or_build("arm", {"key": digest(payload)}, build, label=f"{arm} data")

    @cache  # noqa: B019 - validated (hashed) once per run, however many stages read it
    def trained(self, arm: str) -> Path:
        """The setup's target finetuned on ``arm``'s data."""
        target = self.cfg.setup.target
        trainer = train_settings(self.cfg)  # the trainer group (schedule filled in) is a spec minus paths
        data_dir = self.arm_data(arm)
        payload = {"target": self.model_id(target, target=True), "data": data_dir.name, "trainer": trainer}

        def build(out: Path) -> None:
            spec = TrainSpec(
                output_dir=str(out),
                data_path=str(data_dir / "sft.jsonl"),
                base_model=self.model_path(target, target=True),
                **trainer,
            )
            run_training(spec, log_path=out / "train.log")

        return self.cache.get_or_build("train", payload, build, label=f"{target} on {arm} data", resumable=True)

    def stage_train(self) -> dict[str, Any]:
        out = {}
        for arm in self.cfg.setup.arms:
            metrics = json.loads((self.trained(arm) / "metrics.json").read_text())
            keys = ("train_loss", "steps", "n_examples", "train_seconds", "tokens_per_second", "mfu", "world_size")
            out[arm] = {k: metrics[k] for k in keys if k in metrics}
            out[arm]["data"] = json.loads((self.arm_data(arm) / "composition.json").read_text())
            out[arm]["dir"] = str(self.trained(arm))  # metrics.json (loss_history), checkpoints/, model/
        return {"train": out}

    # ----------------------------------------------------------------- evaluate
    def _evaluate_path(
        self, model_path: str, model_id: str, out_dir: Path, split: str | None = None, group: str = "dataset"
    ) -> dict[str, Any]:
        e, data = self.cfg.evaluator, self.cfg[group]
        problems = self.problems_of(group)[split or e.split]
        problems = problems[: e.limit] if e.limit else problems
        params = {"temperature": e.temperature, "top_p": 1.0, "max_new_tokens": e.max_new_tokens}
        dataset_id = self.id_of(group)
        requests = eval_requests(model_id, dataset_id, data.prompt, problems, params, self.cfg.seed, e.samples)
        # Finetuned targets are local models: API backends sample, they do not evaluate them.
        backend = "hf" if self.cfg.sampler.backend == "openai" else self.cfg.sampler.backend
        sampler_cfg = OmegaConf.merge(self.cfg.sampler, {"backend": backend})
        problem_of = {p.id: p for p in problems}
        return evaluate(
            lambda: open_sampler(
                sampler_cfg, model_path, temperature=e.temperature, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size
            ),
            requests,
            problems,
            data.format,
            out_dir,
            e.maj_ks,
            check_steps=(lambda s, v: self.judge_steps(s, v, problem_of, dataset_id)) if self.judges_steps else None,
            **self.verify_settings,
        )

    @cache  # noqa: B019 - validated (hashed) once per run, however many stages read it
    def evaluation(
        self, label: str, model_path: str, model_id: str, split: str | None = None, group: str = "dataset"
    ) -> dict[str, Any]:
        """A model's scores on a split of the dataset, or (``group="transfer"``) of the transfer set."""
        split = split or ("test" if group == "transfer" else self.cfg.evaluator.split)
        evaluator = _plain(self.cfg.evaluator) | {"split": split}
        payload = {"model": model_id, "dataset": self.id_of(group), "evaluator": evaluator, "seed": self.cfg.seed, "v": 2}
        if self.judges_steps:  # its FPR comes from the judge
            payload["judge"] = self.judge_identity

        def build(out: Path) -> None:
            result = self._evaluate_path(model_path, model_id, out, split, group)
            (out / "result.json").write_text(json.dumps(result, indent=1))

        path = self.cache.get_or_build("evaluate", payload, build, label=label)
        return json.loads((path / "result.json").read_text()) | {"dir": str(path)}  # samples.jsonl, verdicts.jsonl

    def scored(self, label: str, model_path: str, model_id: str) -> dict[str, Any]:
        """A model's test scores, with its scores on the transfer set (if one is configured) under
        ``"transfer"``: the same model, a second dataset, nothing retrained."""
        result = self.evaluation(label, model_path, model_id)
        if self.cfg.transfer is not None:
            transfer = self.evaluation(f"{label} ({self.cfg.transfer.name})", model_path, model_id, group="transfer")
            result["transfer"] = {"name": self.cfg.transfer.name, **transfer}
        return result

    @cache  # noqa: B019
    def selected(self, arm: str) -> dict[str, Any]:
        """The paper's checkpoint selection: every saved checkpoint of ``arm``'s finetune is
        scored on the validation split and the best is the one tested (ties: the later step).
        Without checkpoints or a validation split the final weights are the model."""
        path = self.trained(arm)
        metrics = json.loads((path / "metrics.json").read_text())
        final = {"step": metrics["steps"], "path": str(path / "model")}
        checkpoints = metrics.get("checkpoints") or []
        if not checkpoints or not self.problems["validation"]:
            return {"best": final, "checkpoints": [], "reason": "no checkpoints" if not checkpoints else "no validation split"}
        target = self.cfg.setup.target
        scored = []
        for c in checkpoints:
            folder = path / c["path"]
            result = self.evaluation(
                f"{target} on {arm} data, step {c['step']} (validation)",
                str(folder),
                f"trained@{path.name}/step-{c['step']}",
                split="validation",
            )
            scored.append({"step": c["step"], "path": str(folder), "validation_pass@1": result["pass@1"]})
        best = max(scored, key=lambda c: (c["validation_pass@1"], c["step"]))
        log.info("%s on %s data: best checkpoint step %d (validation pass@1 %.3f) of %d",
                 target, arm, best["step"], best["validation_pass@1"], len(scored))
        return {"best": best, "checkpoints": scored}

    def stage_evaluate(self) -> dict[str, Any]:
        target, pair = self.cfg.setup.target, self.cfg.model_pair
        base = {
            role: self.scored(f"{role} (base)", self.model_path(role, target=True), self.model_id(role, target=True))
            for role in dict.fromkeys([target, *self.cfg.evaluator.baselines])
        }
        arms = {}
        for arm in self.cfg.setup.arms:
            path, selection = self.trained(arm), self.selected(arm)
            best = selection["best"]
            result = self.scored(f"{target} on {arm} data", best["path"], f"trained@{path.name}/step-{best['step']}")
            arms[arm] = {"paradigm": self.cfg.setup.paradigm.get(arm), "checkpoint_selection": selection, **result}
        scores = {arm: r["pass@1"] for arm, r in arms.items()}
        transfer = {arm: r["transfer"]["pass@1"] for arm, r in arms.items() if "transfer" in r}

        def wc_minus_se(by_arm: dict[str, float]) -> float | None:
            return by_arm["wc"] - by_arm["se"] if {"wc", "se"} <= by_arm.keys() else None

        return {
            "models": {
                role: {"name": pair[role].name, "params": pair[role].params, **({"base": base[role]} if role in base else {})}
                for role in ("student", "wc", "se")
            },
            "finetune": {
                "setup": self.cfg.setup.name,
                "target": target,
                "target_model": pair[target].name,
                "base_pass@1": base[target]["pass@1"],
                "arms": arms,
                "best_arm": max(scores, key=scores.get) if scores else None,
                "wc_minus_se_pass@1": wc_minus_se(scores),
                **({"wc_minus_se_transfer_pass@1": wc_minus_se(transfer)} if transfer else {}),
            },
        }

    # ----------------------------------------------------------------- report
    def stage_report(self) -> dict[str, Any]:
        return {
            "run": {
                "model_pair": self.cfg.model_pair.name,
                "dataset": self.cfg.dataset.name,
                "setup": self.cfg.setup.name,
                "budget": self.cfg.budget.name,
                "run_dir": str(self.run_dir),
                "cache_dir": str(self.cache.root),
                "stages": list(self.cfg.stages),
            }
        }
