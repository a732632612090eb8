"""Stage ``dataset``: the problems of every split, and of the transfer set if one is configured,
with the train split decontaminated against every evaluation split.

Cheap and deterministic, so it is always built (planning the later stages needs the problems):
the artifact holds each split as JSONL under a key of the dataset's config and the bytes of the
local files it reads, so a changed data file is a new dataset. Decontamination
(:mod:`wcse.data.decontaminate`) checks each train problem and few-shot exemplar against the
dataset's validation and test splits, and against the transfer set's test split; what overlaps is
listed in ``<cache>/dataset/<key>/``. Where ``decontaminate.embedding.model`` names an encoder,
train problems and exemplars are also flagged by embedding similarity
(:mod:`wcse.data.near_duplicates`), which sees rephrased copies. What overlaps the dataset's own splits is dropped from the
train split (``decontaminate.drop``); what overlaps only the transfer set, an evaluation-only set
that may be added after training, is counted and listed, never dropped, so adding one retrains
nothing. The dataset keeps its id: sample stores are keyed by problem, so dropping a problem
resamples nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wcse.artifacts import digest, file_sha256
from wcse.data import prompts
from wcse.data.decontaminate import Index
from wcse.data.near_duplicates import Embedder, EmbeddingIndex
from wcse.data.registry import SPLITS, load_problems, provenance
from wcse.errors import ConfigError
from wcse.models import fingerprint
from wcse.records import Problem, read_jsonl, write_jsonl
from wcse.stages.base import Inputs, RunContext, Stage, plain

log = logging.getLogger(__name__)

GROUPS = ("dataset", "transfer")  # the run's dataset, and an evaluation-only transfer set
EVALUATION = {"dataset": ("validation", "test"), "transfer": ("test",)}  # what a run scores models on


@dataclass(frozen=True)
class Dataset:
    """One configured dataset's problems, split by split."""

    group: str  # "dataset" or "transfer"
    cfg: Any  # its config group (format, prompt, ...)
    key: str
    splits: dict[str, list[Problem]]
    provenance: dict[str, str]

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def id(self) -> str:
        """What cache keys and sample records call the dataset: its name and content key."""
        return f"{self.name}@{self.key}"

    def by_id(self, split: str) -> dict[str, Problem]:
        return {p.id: p for p in self.splits[split]}


@dataclass(frozen=True)
class Datasets:
    main: Dataset
    transfer: Dataset | None
    decontamination: Path | None = None  # <cache>/dataset/<key>/ (report.json, train.jsonl, exemplars.jsonl)

    def index(self, group: str, n: int, min_coverage: float) -> Index | None:
        """The n-grams of the problems the run evaluates on in ``group`` ("dataset": validation
        and test; "transfer": the transfer set's test), None without a transfer set."""
        d = self.main if group == "dataset" else self.transfer
        if d is None:
            return None
        return Index(evaluation_items(d, group), n, min_coverage)

    def embedding_indexes(self, cfg: Any) -> dict[str, EmbeddingIndex]:
        """The embeddings of the problems the run evaluates on, by group, under one encoder
        (``decontaminate.embedding``)."""
        embedder = Embedder(cfg.model, cfg.batch_size, cfg.max_length)
        groups = {"dataset": self.main, "transfer": self.transfer}
        return {
            group: EmbeddingIndex(evaluation_items(d, group), embedder, cfg.threshold, desc=f"embed {d.name} evaluation problems")
            for group, d in groups.items()
            if d is not None
        }


def evaluation_items(d: Dataset, group: str) -> list[tuple[str, str]]:
    """(name, question) of each problem ``d`` is evaluated on as ``group``."""
    return [(f"{d.name} {split} {p.id}", p.question) for split in EVALUATION[group] for p in d.splits[split]]


def content_key(cfg: Any) -> str:
    """A dataset's config plus the bytes of any local files it reads."""
    config = plain(cfg)
    files = {}
    for split in SPLITS:
        source = config.get(split) or {}
        if source.get("path") and Path(source["path"]).is_file():
            files[split] = file_sha256(Path(source["path"]))
    return digest({"dataset": config, "files": files})


def load(ctx: RunContext, group: str) -> Dataset:
    cfg = ctx.cfg[group]
    key = content_key(cfg)

    def build(out: Path) -> None:
        for split, problems in load_problems(cfg).items():
            write_jsonl(out / f"{split}.jsonl", problems)

    path = ctx.cache.get_or_build("dataset", {"key": key}, build, label=cfg.name)
    splits = {s: list(read_jsonl(path / f"{s}.jsonl", Problem)) for s in SPLITS}
    return Dataset(group, cfg, key, splits, provenance(cfg))


def decontaminate(ctx: RunContext, data: Datasets) -> Datasets:
    """``data`` with the train problems that overlap an evaluation split dropped (or only listed,
    ``decontaminate.drop=false``), and the exemplars of the sampling prompt checked."""
    d = ctx.cfg.decontaminate
    if not d.enabled:
        return data
    main = data.main
    payload = {
        "dataset": main.id,
        "transfer": data.transfer.id if data.transfer is not None else None,
        "prompt": main.cfg.prompt,
        "ngram": d.ngram,
        "min_coverage": d.min_coverage,
        **({"embedding": plain(d.embedding) | {"weights": fingerprint(d.embedding.model)}} if d.embedding.model else {}),  # absent when off: keys stay
        "v": 2,
    }

    def build(out: Path) -> None:
        indexes = {group: index for group in EVALUATION if (index := data.index(group, d.ngram, d.min_coverage)) is not None}
        near = data.embedding_indexes(d.embedding) if d.embedding.model else {}
        checked = {"train": main.splits["train"], "exemplars": list(prompts.template(main.cfg.prompt).exemplars)}
        report: dict[str, Any] = {"ngram": d.ngram, "min_coverage": d.min_coverage, "evaluation_items": {g: i.size for g, i in indexes.items()}}
        if near:
            report["embedding"] = {"model": d.embedding.model, "threshold": d.embedding.threshold}
        for name, problems in checked.items():
            flagged = [
                {"id": p.id, "group": group, "against": m.against, "shared": m.text, "coverage": m.coverage}
                for p in problems
                for group, index in indexes.items()
                if (m := index.match(p.question))
            ]
            by_embedding: dict[str, int] = {}
            queries = next(iter(near.values())).embedder([p.question for p in problems], desc=f"embed {name}") if near else None
            for group, index in near.items():  # what only a rephrasing check sees: not already flagged by n-gram
                seen = {f["id"] for f in flagged if f["group"] == group}
                matches = index.match(queries)
                rows = [{"id": p.id, "group": group, "against": m.against, "similarity": m.similarity}
                        for p, m in zip(problems, matches, strict=True) if m is not None and p.id not in seen]
                flagged += rows
                by_embedding[group] = len(rows)
            with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(row) + "\n" for row in flagged)
            suffix = {"dataset": "", "transfer": "_transfer"}
            report[name] = (
                {"checked": len(problems)}
                | {f"flagged{suffix[group]}": len({f["id"] for f in flagged if f["group"] == group}) for group in indexes}
                | {f"by_embedding{suffix[group]}": n for group, n in by_embedding.items()}
            )
        (out / "report.json").write_text(json.dumps(report, indent=1))

    path = ctx.cache.get_or_build("dataset", {"decontaminate": payload}, build, label=f"decontaminate {main.name}")
    report = json.loads((path / "report.json").read_text())
    if exemplars := report["exemplars"]["flagged"] + report["exemplars"].get("flagged_transfer", 0):
        log.warning("%d few-shot exemplar(s) of prompt %s overlap an evaluation split: see %s", exemplars, main.cfg.prompt, path / "exemplars.jsonl")
    flagged = {row["id"] for line in open(path / "train.jsonl", encoding="utf-8") if (row := json.loads(line))["group"] == "dataset"}
    if report["train"].get("flagged_transfer"):
        log.warning("%d of %d train problems overlap the transfer set %s: counted and listed in %s, not dropped (evaluation only)",
                    report["train"]["flagged_transfer"], report["train"]["checked"], data.transfer.name, path)
    if flagged:
        log.warning("%d of %d train problems overlap an evaluation split (%s): %s; listed in %s", len(flagged),
                    report["train"]["checked"], rule(d), "dropped" if d.drop else "kept (decontaminate.drop=false)", path)
    if flagged and d.drop:
        if len(flagged) == len(main.splits["train"]):
            raise ConfigError(
                f"decontaminate: every one of the {len(flagged)} train problems of {main.name} overlaps an evaluation split at"
                f" ngram={d.ngram}, min_coverage={d.min_coverage} (listed in {path / 'train.jsonl'}); raise decontaminate.ngram"
                " or decontaminate.min_coverage, or set decontaminate.drop=false"
            )
        main = replace(main, splits={**main.splits, "train": [p for p in main.splits["train"] if p.id not in flagged]})
    return replace(data, main=main, decontamination=path)


def rule(d: Any) -> str:
    """The decontamination rule in words, for logs."""
    return f"{d.ngram}-gram" + (f" or {d.embedding.model} similarity >= {d.embedding.threshold:g}" if d.embedding.model else "")


def plan(ctx: RunContext, inputs: Inputs) -> Datasets:
    data = Datasets(load(ctx, "dataset"), load(ctx, "transfer") if ctx.cfg.transfer is not None else None)
    return decontaminate(ctx, data)


def section(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "id": dataset.id,
        "splits": {s: {"n": len(dataset.splits[s]), "source": dataset.provenance[s]} for s in SPLITS},
    }


def build(ctx: RunContext, inputs: Inputs, data: Datasets) -> dict[str, Any]:
    out = section(data.main)
    if data.transfer is not None:
        out["transfer"] = section(data.transfer)
    if data.decontamination is not None:
        report = json.loads((data.decontamination / "report.json").read_text())
        dropped = report["train"]["flagged"] if ctx.cfg.decontaminate.drop else 0
        out["decontamination"] = report | {"drop": ctx.cfg.decontaminate.drop, "dropped": dropped, "dir": str(data.decontamination)}
    return {"dataset": out}


STAGE = Stage(
    name="dataset",
    needs=(),
    output="the problems of each split, and of the transfer set: `<cache>/dataset/<key>/{train,validation,test}.jsonl`;"
    " train problems and exemplars overlapping an evaluation split: `<cache>/dataset/<key>/`",
    plan=plan,
    build=build,
)
