"""Experiment tracking: each finished job to Weights & Biases, one run per data arm (offline by default).

A job (one setup x budget x model pair x dataset) becomes one W&B run per arm of its setup, so the
WC and SE runs of a job carry the same metric keys and a dashboard compares them by grouping on
the ``arm`` config field instead of pairing arm-prefixed keys by hand. All runs of a Hydra sweep
share one group, named after the sweep directory; ``job_type`` is the setup.

Everything is logged after the pipeline, from ``summary.json`` and the artifacts it points to
(``train[arm].dir``: ``metrics.json`` with the loss history; ``finetune.arms[arm].dir``: the
evaluation's ``samples.jsonl``/``verdicts.jsonl``), so a job that reuses cached training still
gets its curves, and a tracker failure cannot lose results already written.

Keys of an arm's run (``src`` = the sampler whose filtered data the arm trains on; arm ``mix``
reads two, so it has no ``data``/``sampling``/``filter`` keys, its composition is ``train/data``):

- series: ``train/loss`` and ``val/pass@1`` (checkpoint selection) against ``train/step``;
  ``data/coverage@k`` against ``data/k`` (the coverage curve)
- ``data/*``, ``sampling/*``, ``filter/*``: the summary's ``data[src]``, ``sampling.models[src]``,
  ``filter.models[src]`` (coverage, diversity and ``diversity_by_rule``, FPR with its interval, per
  level/subject; cost; verification counts)
- ``train/*``: ``train[arm]`` (final loss, steps, tokens/s, MFU, data composition)
- ``eval/*``: ``finetune.arms[arm]`` (pass@1 with ``pass@1_interval/{low,high}``, ``maj/<k>``, per
  level/subject, FPR, selected checkpoint; ``eval/transfer/*`` the same on the transfer set) and
  ``eval/base_pass@1``, ``eval/base_transfer_pass@1`` (the untuned target, few-shot when the
  prompt has shots), ``eval/base_zero_shot_pass@1`` (the same zero-shot, for reference)
- ``budget/*``, ``timing/*``: the job's, identical in every arm's run
- ``eval/samples``: a table of the first evaluation outputs
"""

from __future__ import annotations

import json
import logging
from itertools import islice
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from wcse.records import Sample, Verdict, read_jsonl
from wcse.summary import ArmResult, RunSummary
from wcse.train.arms import arm_sources

log = logging.getLogger(__name__)

SAMPLE_ROWS = 32  # evaluation outputs per table: enough to read, small enough for every run
PROMPT_TAIL = 300  # characters: the question sits at the end of a (few-shot) prompt
SAMPLE_COLUMNS = [
    "problem_id", "index", "prompt_tail", "output",  # the sample
    "extracted", "correct", "steps_correct", "status",  # its verdict
]
SERIES = {"train/loss": "train/step", "val/pass@1": "train/step", "data/coverage@k": "data/k"}  # y -> x


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out


def group_name(cfg: DictConfig) -> str:
    """``logger.group``, else the sweep directory's name (every job of a multirun shares it), else
    this run directory's name (the arms of one job together)."""
    if cfg.logger.group:
        return cfg.logger.group
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return Path(cfg.paths.run_dir).name


def _source(arm: str) -> str | None:
    """The sampler whose data ``arm`` trains on; None for an arm mixing two (its data has no metrics)."""
    sources = arm_sources(arm)
    return sources[0] if len(sources) == 1 else None


def _dump(record: Any) -> dict[str, Any]:
    return {} if record is None else record.model_dump(by_alias=True, exclude_none=True)


def _arm(summary: RunSummary, arm: str) -> ArmResult | None:
    return summary.finetune.arms.get(arm) if summary.finetune is not None else None


def arm_metrics(summary: RunSummary, arm: str) -> dict[str, float]:
    """The scalar keys of ``arm``'s run (see the module docstring); sections the job's stages did
    not produce are absent."""
    src = _source(arm)
    result = _dump(_arm(summary, arm))
    if "pass@1_interval" in result:
        result["pass@1_interval"] = dict(zip(("low", "high"), result["pass@1_interval"], strict=True))
    data = {k: v for k, v in _dump((summary.data or {}).get(src)).items() if k != "coverage_curve"}
    sampling = summary.sampling
    budget = {} if sampling is None else {
        **_dump(sampling.budget),
        "realised_flops_ratio_wc_over_se": sampling.realised_flops_ratio_wc_over_se,
        "realised_dollar_ratio_wc_over_se": sampling.realised_dollar_ratio_wc_over_se,
    }
    finetune = summary.finetune
    base = (summary.models or {}).get(finetune.target) if finetune is not None else None
    transfer = base.base.transfer if base is not None and base.base is not None else None
    return _flatten(
        {
            "data": data,
            "sampling": _dump(sampling.models.get(src)) if sampling is not None else {},
            "filter": _dump(summary.filter.models.get(src)) if summary.filter is not None else {},
            "train": _dump((summary.train or {}).get(arm)),
            "eval": {
                **result,
                "base_pass@1": finetune.base_pass_at_1 if finetune is not None else None,
                "base_zero_shot_pass@1": finetune.base_zero_shot_pass_at_1 if finetune is not None else None,
                "base_transfer_pass@1": transfer.pass_at_1 if transfer is not None else None,
            },
            "budget": budget,
            "timing": summary.timing_seconds,
        }
    )


def arm_series(summary: RunSummary, arm: str) -> list[dict[str, float]]:
    """History rows of ``arm``'s run, one per point of a curve in SERIES."""
    data = (summary.data or {}).get(_source(arm))
    rows = [{"data/k": int(k), "data/coverage@k": v} for k, v in (data.coverage_curve if data else {}).items()]
    result = _arm(summary, arm)
    rate = result.checkpoint_selection.best.learning_rate if result is not None else None  # trainer.lr_grid: the chosen rate's curves
    train = (summary.train or {}).get(arm)
    if train is not None:
        history = json.loads((Path(train.at(rate).dir) / "metrics.json").read_text()).get("loss_history", [])
        rows += [{"train/step": h["step"], "train/loss": h["loss"]} for h in history]
    checkpoints = [c for c in result.checkpoint_selection.checkpoints if c.learning_rate == rate] if result is not None else []
    rows += [{"train/step": c.step, "val/pass@1": c.validation_pass_at_1} for c in checkpoints]
    return rows


def sample_rows(eval_dir: Path, n: int = SAMPLE_ROWS) -> list[list[Any]]:
    """The first ``n`` evaluation outputs with their verdicts, as rows of SAMPLE_COLUMNS."""
    verdicts = {v.key: v for v in read_jsonl(eval_dir / "verdicts.jsonl", Verdict)}
    rows = []
    for s in islice(read_jsonl(eval_dir / "samples.jsonl", Sample), n):
        v = verdicts[s.key]
        tail = s.prompt[-PROMPT_TAIL:]
        rows.append([s.problem_id, s.index, tail, s.text, v.extracted, v.correct, v.steps_correct, v.status])
    return rows


def track(cfg: DictConfig, summary: RunSummary) -> None:
    """Log the job to the configured tracker (``logger=none``: nothing).

    A tracker failure is logged with its traceback and the job still succeeds: its results are in
    summary.json already, and a missing chart must not mark a finished job FAILED in a sweep.
    """
    if cfg.logger.backend == "none":
        return
    if cfg.logger.backend != "wandb":
        raise ValueError(f"logger.backend={cfg.logger.backend!r}: must be none or wandb")
    try:
        _track_wandb(cfg, summary)
    except Exception:
        summary_path = Path(cfg.paths.run_dir) / "summary.json"
        log.exception("wandb tracking failed; the job's results are in %s", summary_path)


def _track_wandb(cfg: DictConfig, summary: RunSummary) -> None:
    import wandb  # a second to import: only for jobs that track

    group, config = group_name(cfg), OmegaConf.to_container(cfg, resolve=True)
    names = [cfg.model_pair.name, cfg.dataset.name, cfg.setup.name, cfg.budget.name]
    tags = [f"{k}:{v}" for k, v in zip(("pair", "dataset", "setup", "budget"), names, strict=True)]
    # Process-wide, not per run: wandb's own usage telemetry follows these settings, and would
    # still post to the W&B server from an offline run were the mode given to init() only. The
    # runs are written after the fact, so system metrics and console capture would describe this
    # logging step, not the job (and the system monitor probes cloud metadata endpoints).
    wandb.setup(settings=wandb.Settings(mode=cfg.logger.mode, x_disable_stats=True, console="off"))
    try:
        for arm in cfg.setup.arms:
            with wandb.init(
                project=cfg.logger.project,
                group=group,
                job_type=cfg.setup.name,
                name="-".join([*names, arm]),
                tags=[*tags, f"arm:{arm}", *cfg.logger.tags],
                config={**config, "arm": arm, "paradigm": cfg.setup.paradigm.get(arm)},
                dir=str(cfg.paths.run_dir),
            ) as run:
                for key, step in SERIES.items():
                    run.define_metric(key, step_metric=step)
                for row in arm_series(summary, arm):
                    run.log(row)
                result = _arm(summary, arm)
                if result is not None:
                    table = wandb.Table(columns=SAMPLE_COLUMNS, data=sample_rows(Path(result.dir)))
                    run.log({"eval/samples": table})
                run.summary.update(arm_metrics(summary, arm))
            log.info("wandb: %s run of arm %s (group %s) in %s", cfg.logger.mode, arm, group, run.settings.sync_dir)
    finally:
        # A finished run's records reach its .wandb file asynchronously, from wandb's service
        # process: finish() returns first. Tearing the service down waits for them, so the runs
        # are complete on disk when tracking returns (read at once, a file can still hold only
        # its header: the cause of a test that failed under load), and the next job's setup()
        # starts from its own settings.
        wandb.teardown()
