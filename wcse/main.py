"""``python -m wcse.main``: compose the Hydra config and run the selected stages.

Training runs in worker processes that read a spec file (wcse.train), so this entry point
is started once per run even for multi-process DeepSpeed jobs: Hydra composes the config
once, creates one run directory, and never sees ``--local_rank``.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from wcse.config import register, validate
from wcse.pipeline import Pipeline
from wcse.report import print_summary
from wcse.tracking import track

log = logging.getLogger("wcse")

register()


def run(cfg: DictConfig) -> None:
    validate(cfg)
    summary = Pipeline(cfg).run()
    print_summary(summary)
    track(cfg, summary)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """One run; in a multirun, a failed job is recorded in its directory (``FAILED``, with the
    traceback; no ``summary.json``) and the sweep goes on to the next job."""
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        run(cfg)
        return
    try:
        run(cfg)
    except Exception:  # one bad cell must not cost the rest of a grid
        failed = Path(cfg.paths.run_dir) / "FAILED"
        failed.write_text(traceback.format_exc())
        log.exception("job %s failed (traceback in %s); the sweep goes on", HydraConfig.get().job.num, failed)


if __name__ == "__main__":
    main()
