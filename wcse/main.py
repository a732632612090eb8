"""``python -m wcse.main``: compose the Hydra config and run the selected stages.

Training runs in worker processes that read a spec file (wcse.train), so this entry point
is started once per run even for multi-process DeepSpeed jobs: Hydra composes the config
once, creates one run directory, and never sees ``--local_rank``.

A :class:`~wcse.errors.WcseError` (a bad setting, data file, missing input, a lock timeout)
is the user's to fix from its message: it is printed alone, without Hydra's stack trace, and
the exit status is 1. ``HYDRA_FULL_ERROR=1`` shows the trace; any other exception is a bug
and keeps it.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from wcse import rounds, runner
from wcse.config import register
from wcse.errors import WcseError
from wcse.report.console import print_summary
from wcse.settings import validate
from wcse.tracking import track

log = logging.getLogger("wcse")

register()


def run(cfg: DictConfig) -> None:
    validate(cfg)
    if cfg.rounds == 1:
        runs = [(cfg, runner.run(cfg))]
    else:  # each round's runs are composed from this job's overrides
        task = rounds.job_overrides(HydraConfig.get().overrides.task)
        runs = rounds.run(cfg, lambda extra: compose(config_name="config", overrides=[*task, *extra]))
    for run_cfg, summary in runs:
        print_summary(summary)
        track(run_cfg, summary)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """One run; in a multirun, a failed job is recorded in its directory (``FAILED``, with the
    traceback; no ``summary.json``) and the sweep goes on to the next job."""
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        try:
            run(cfg)
        except WcseError as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"wcse: error: {err}", file=sys.stderr)
            sys.exit(1)
        return
    try:
        run(cfg)
    except Exception as err:  # one bad cell must not cost the rest of a grid
        failed = Path(cfg.paths.run_dir) / "FAILED"
        failed.write_text(traceback.format_exc())
        job = HydraConfig.get().job.num
        if isinstance(err, WcseError):
            log.error("job %s failed: %s (in %s); the sweep goes on", job, err, failed)
        else:
            log.exception("job %s failed (traceback in %s); the sweep goes on", job, failed)


if __name__ == "__main__":
    main()
