"""Load a configured dataset into train / validation / test lists of ``Problem``."""

from __future__ import annotations

import logging
from typing import Any

from wcse.data import prompts, sources
from wcse.records import Problem
from wcse.toy import world

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
EXEMPLARS = "exemplars"  # in a split's ``exclude``: the few-shot exemplars of the dataset's prompt


def load_problems(cfg: Any) -> dict[str, list[Problem]]:
    """The dataset's splits; a split the dataset does not have is an empty list.

    ``cfg`` is the ``dataset`` config group. Each split is read from its own source, less the
    splits it ``exclude``s, then cut to a seeded subset of ``size`` (the paper's MATH
    validation: 500 MATH test problems outside MATH-500; GSM8K's: 500 of train, which then
    excludes them), so no two splits share a problem. ``exclude: [exemplars]`` also removes the
    prompt's few-shot exemplars (MBPP's validation is drawn from the file that holds them), so no
    model is scored on a problem its prompt solves.
    """
    if cfg.format == "toy_arith":
        toy = cfg.toy
        levels = tuple(toy.levels)
        splits = {
            "train": world.generate("train", toy.n_train, cfg.seed, levels),
            "validation": world.generate("validation", toy.n_validation, cfg.seed, levels),
            "test": world.variants(toy.n_test, cfg.seed, levels, toy.variants)
            if toy.variants
            else world.generate("test", toy.n_test, cfg.seed, levels),
        }
    else:
        splits = {}
        for split in _order(cfg):
            splits[split] = _load(cfg, split, splits)
    if cfg.max_train is not None:
        splits["train"] = splits["train"][: cfg.max_train]
    if cfg.max_test is not None:
        splits["test"] = splits["test"][: cfg.max_test]
    log.info("dataset %s: %s", cfg.name, ", ".join(f"{k} {len(splits[k])}" for k in SPLITS))
    return {split: splits[split] for split in SPLITS}


def _excludes(cfg: Any, split: str) -> list[str]:
    source = cfg.get(split)
    excludes = [] if source is None else list(source.exclude)
    bad = [e for e in excludes if e not in (*SPLITS, EXEMPLARS) or e == split]
    if bad:
        raise ValueError(
            f"dataset {cfg.name}: {split}.exclude={excludes}: {bad} not another split of {list(SPLITS)} or {EXEMPLARS!r}"
        )
    return excludes


def _order(cfg: Any) -> list[str]:
    """The splits in an order where each comes after those it excludes."""
    order: list[str] = []
    pending = list(SPLITS)
    while pending:
        ready = [s for s in pending if set(_excludes(cfg, s)) - {EXEMPLARS} <= set(order)]
        if not ready:
            raise ValueError(f"dataset {cfg.name}: the `exclude` lists of {pending} form a cycle")
        order += ready
        pending = [s for s in pending if s not in ready]
    return order


def _load(cfg: Any, split: str, done: dict[str, list[Problem]]) -> list[Problem]:
    source = cfg.get(split)
    if source is None:
        return []
    problems = sources.load_split(
        source.format or cfg.format,
        # ids name the split of the source (a validation split drawn from train keeps train's ids)
        source.hub_split or split,
        path=source.path,
        hub=source.hub,
        hub_name=source.hub_name,
        hub_split=source.hub_split,
    )
    for other in source.exclude:
        problems = sources.without(problems, list(prompts.template(cfg.prompt).exemplars) if other == EXEMPLARS else done[other])
    if source.size is not None:
        try:
            problems = sources.seeded_subset(problems, source.size, cfg.seed)
        except ValueError as err:
            raise ValueError(f"dataset {cfg.name}: {split}.size={source.size}: {err}") from None
    return problems


def provenance(cfg: Any) -> dict[str, str]:
    """Where each split comes from, in words, for the run summary."""
    if cfg.format == "toy_arith":
        return {split: f"generated (wcse.toy.world, seed {cfg.seed})" for split in SPLITS}
    out = {}
    for split in SPLITS:
        source = cfg.get(split)
        if source is None:
            out[split] = "none"
            continue
        where = source.path or f"hub {source.hub} ({source.hub_name or 'default'}, {source.hub_split or split})"
        parts = [where, *(f"minus {e}" for e in source.exclude)]
        if source.size is not None:
            parts.append(f"seeded subset of {source.size} (seed {cfg.seed})")
        if split == "train" and cfg.max_train is not None:
            parts.append(f"first {cfg.max_train}")
        if split == "test" and cfg.max_test is not None:
            parts.append(f"first {cfg.max_test}")
        out[split] = ", ".join(parts)
    return out
