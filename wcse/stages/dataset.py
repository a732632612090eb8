"""Stage ``dataset``: the problems of every split, and of the transfer set if one is configured.

Cheap and deterministic, so it is always built (planning the later stages needs the problems):
the artifact holds each split as JSONL under a key of the dataset's config and the bytes of the
local files it reads, so a changed data file is a new dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wcse.artifacts import digest, file_sha256
from wcse.data.registry import SPLITS, load_problems, provenance
from wcse.records import Problem, read_jsonl, write_jsonl
from wcse.stages.base import Inputs, RunContext, Stage, plain

GROUPS = ("dataset", "transfer")  # the run's dataset, and an evaluation-only transfer set


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


def plan(ctx: RunContext, inputs: Inputs) -> Datasets:
    return Datasets(load(ctx, "dataset"), load(ctx, "transfer") if ctx.cfg.transfer is not None else None)


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
    return {"dataset": out}


STAGE = Stage(
    name="dataset",
    needs=(),
    output="the problems of each split, and of the transfer set: `<cache>/dataset/<key>/{train,validation,test}.jsonl`",
    plan=plan,
    build=build,
)
