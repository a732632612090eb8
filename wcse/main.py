"""``python -m wcse.main``: compose the Hydra config and run the selected stages.

Training runs in worker processes that read a spec file (wcse.train), so this entry point
is started once per run even for multi-process DeepSpeed jobs: Hydra composes the config
once, creates one run directory, and never sees ``--local_rank``.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from wcse.config import register, validate
from wcse.pipeline import Pipeline
from wcse.report import print_summary
from wcse.tracking import track

log = logging.getLogger("wcse")

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    validate(cfg)
    summary = Pipeline(cfg).run()
    print_summary(summary)
    track(cfg, summary)


if __name__ == "__main__":
    main()
