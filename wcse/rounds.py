"""Iterated rounds (ReST-EM / STaR style): sample -> filter -> finetune, R times, the finetuned
models sampling the next round at the same per-round budget.

``rounds=R`` (R > 1) runs the stage graph twice a round, once per setup the tracks need, each in
``<run_dir>/round-<r>/<setup>/`` with its own ``summary.json``; the cache shares what the two runs
have in common (both models' samples and verdicts). Three tracks are followed (:data:`TRACKS`):

- WC self-improvement: the WC finetuned on the round's WC data; it is the next round's WC.
- W2S: the SE finetuned on the round's WC data.
- SE self-improvement: the SE finetuned on the round's SE data; it is the next round's SE.

Every finetune starts from the base model (ReST-EM: the data improves, the initialisation does
not drift); the sampler of round r+1 is the checkpoint round r selected on validation, the model
that round's test score is of. ``<run_dir>/rounds.json`` records which model sampled each round.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from wcse import runner
from wcse.roles import SAMPLERS
from wcse.settings import validate
from wcse.summary import RunSummary

log = logging.getLogger(__name__)

ROUND_DIR = "round-"  # round r of a job runs in <run_dir>/round-<r>/<setup>/
Compose = Callable[[list[str]], DictConfig]  # extra overrides -> the run's config composed with them


class Track(NamedTuple):
    setup: str  # the setup (conf/setup) whose run trains it
    arm: str  # the data arm: whose samples the target learns from


TRACKS = {
    "wc_self_improvement": Track("self_improve", "wc"),
    "w2s": Track("w2s", "wc"),
    "se_self_improvement": Track("w2s", "se"),
}
NEXT_SAMPLER = {"wc": "wc_self_improvement", "se": "se_self_improvement"}  # the track whose model samples next


def setups() -> dict[str, list[str]]:
    """Each setup the tracks need, with the arms it trains."""
    out: dict[str, list[str]] = {}
    for track in TRACKS.values():
        out.setdefault(track.setup, []).append(track.arm)
    return out


def job_overrides(task: list[str]) -> list[str]:
    """A job's overrides less those each round sets itself (the setup and its arms, the folder)."""
    parsed = OverridesParser.create().parse_overrides(task)
    return [
        o.input_line for o in parsed
        if o.key_or_group.split(".")[0] not in ("setup", "rounds") and o.key_or_group != "paths.run_dir"
    ]


def round_overrides(run_dir: Path, r: int, setup: str, samplers: dict[str, str], base: dict[str, str]) -> list[str]:
    """Round ``r``'s run of ``setup``: its folder, arms, and samplers (the base models finetune)."""
    overrides = [f"setup={setup}", f"setup.arms=[{','.join(setups()[setup])}]", f"paths.run_dir='{run_dir / f'{ROUND_DIR}{r}' / setup}'", "rounds=1"]
    for role, path in samplers.items():
        if path != base[role]:
            overrides += [f"model_pair.{role}.path='{path}'", f"model_pair.{role}.target='{base[role]}'"]
    return overrides


def next_samplers(by_setup: dict[str, RunSummary]) -> dict[str, str]:
    """The next round's samplers: each self-improvement track's selected checkpoint."""
    out = {}
    for role in SAMPLERS:
        track = TRACKS[NEXT_SAMPLER[role]]
        out[role] = by_setup[track.setup].finetune.arms[track.arm].checkpoint_selection.best.path
    return out


def run(cfg: DictConfig, compose: Compose) -> list[tuple[DictConfig, RunSummary]]:
    """``cfg.rounds`` rounds; ``compose`` gives a round's config (the job's overrides plus the
    round's). Returns each run's config and summary, in the order they ran."""
    run_dir = Path(cfg.paths.run_dir)
    base = {role: cfg.model_pair[role].target or cfg.model_pair[role].path for role in SAMPLERS}
    samplers = {role: cfg.model_pair[role].path for role in SAMPLERS}
    runs: list[tuple[DictConfig, RunSummary]] = []
    record = []
    for r in range(1, cfg.rounds + 1):
        log.info("=== round %d of %d: WC sampler %s, SE sampler %s", r, cfg.rounds, samplers["wc"], samplers["se"])
        by_setup = {}
        for setup in setups():
            round_cfg = compose(round_overrides(run_dir, r, setup, samplers, base))
            validate(round_cfg)
            by_setup[setup] = runner.run(round_cfg)
            runs.append((round_cfg, by_setup[setup]))
        scores = {name: by_setup[t.setup].finetune.arms[t.arm].pass_at_1 for name, t in TRACKS.items()}
        record.append({"round": r, "samplers": samplers, "pass@1": scores})
        log.info("round %d pass@1: %s", r, ", ".join(f"{name} {100 * v:.1f}%" for name, v in scores.items()))
        samplers = next_samplers(by_setup)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "rounds.json").write_text(json.dumps({"rounds": record}, indent=1))
    log.info("rounds -> %s", run_dir / "rounds.json")
    return runs
