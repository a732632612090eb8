"""Shared fixtures: compose configs through Hydra's compose API, exactly as the app does."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from wcse.config import register

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = Path(os.environ.get("WCSE_DATA_DIR", ROOT.parent / "shared" / "data"))

register()


def compose_config(root: Path, *overrides: str) -> DictConfig:
    """The app's config, composed as ``python -m wcse.main`` would, with paths under ``root``."""
    if not GlobalHydra.instance().is_initialized():  # initialise once: it costs more than a compose
        initialize_config_dir(config_dir=str(CONF), version_base="1.3")
    return compose(
        config_name="config",
        overrides=[f"paths.cache_dir={root / 'cache'}", f"paths.run_dir={root / 'run'}", *overrides],
    )


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``compose_cfg("setup=kd", ...)``: the app's config with paths pointed into tmp_path."""
    return lambda *overrides: compose_config(tmp_path, *overrides)
