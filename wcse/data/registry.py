"""Load a configured dataset into train / validation / test lists of ``Problem``."""

from __future__ import annotations

import logging
from typing import Any

from wcse.data import sources
from wcse.records import Problem
from wcse.toy import world

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def load_problems(cfg: Any) -> dict[str, list[Problem]]:
    """The dataset's splits; a split the dataset does not have is an empty list.

    ``cfg`` is the ``dataset`` config group. A validation split is either configured or
    carved (seeded) out of train, so train and validation never share a problem.
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
        splits = {split: _load(cfg, split) for split in SPLITS}
        if cfg.validation_from_train and splits["train"]:
            if splits["validation"]:
                raise ValueError(
                    f"dataset {cfg.name}: both `validation` and `validation_from_train` are set; choose one"
                )
            splits["train"], splits["validation"] = sources.carve_validation(
                splits["train"], cfg.validation_from_train, cfg.seed
            )
    if cfg.max_train is not None:
        splits["train"] = splits["train"][: cfg.max_train]
    if cfg.max_test is not None:
        splits["test"] = splits["test"][: cfg.max_test]
    log.info("dataset %s: %s", cfg.name, ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    return splits


def _load(cfg: Any, split: str) -> list[Problem]:
    source = cfg.get(split)
    if source is None:
        return []
    return sources.load_split(
        source.format or cfg.format,
        split,
        path=source.path,
        hub=source.hub,
        hub_name=source.hub_name,
        hub_split=source.hub_split,
    )
