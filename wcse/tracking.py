"""Experiment tracking: the run's summary to Weights & Biases (offline by default)."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def track(cfg: DictConfig, summary: dict[str, Any]) -> None:
    """Log the numeric leaves of ``summary`` to the configured tracker (``logger=none``: nothing)."""
    if cfg.logger.backend == "none":
        return
    if cfg.logger.backend != "wandb":
        raise ValueError(f"logger.backend={cfg.logger.backend!r}: must be none or wandb")
    import wandb

    os.environ.setdefault("WANDB_DIR", str(cfg.paths.run_dir))
    run = wandb.init(
        project=cfg.logger.project,
        mode=cfg.logger.mode,
        group=cfg.logger.group,
        tags=[cfg.model_pair.name, cfg.dataset.name, cfg.setup.name, cfg.budget.name, *cfg.logger.tags],
        config=OmegaConf.to_container(cfg, resolve=True),
        dir=str(cfg.paths.run_dir),
    )
    run.summary.update(_flatten({k: v for k, v in summary.items() if k != "artifacts"}))
    run.finish()
