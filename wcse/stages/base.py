"""What a stage is, and what the stages of one run share.

A stage declares what it needs (the stages whose outputs it reads), how it *plans* its output
(the addresses of its artifacts, computed from the config and upstream outputs without building
anything), how it *builds* what is missing (returning its part of the run summary) and, when it
is not selected, what of its output is absent. :mod:`wcse.runner` orders the stages, checks the
selection against the cache before anything runs, and runs the selected ones.

Outputs are small typed records (paths, keys, requests) that give their content on demand, so a
downstream stage reads an upstream artifact through its record and never through the stage
that built it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wcse.artifacts import Cache

Inputs = Mapping[str, Any]  # upstream stage name -> its output


def plain(node: Any) -> Any:
    """A config node as plain containers (for cache keys and JSON)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


@dataclass
class RunContext:
    """One run's config, artifact cache and run directory, and the services its stages share."""

    cfg: DictConfig
    cache: Cache
    run_dir: Path
    selected: frozenset[str]
    _services: dict[str, Any] = field(default_factory=dict, repr=False)

    def service(self, name: str, make: Callable[[], Any]) -> Any:
        """A service object (the LLM judge, say) made once per run, however many stages use it."""
        if name not in self._services:
            self._services[name] = make()
        return self._services[name]


def _nothing_missing(ctx: RunContext, output: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class Stage:
    """One node of the method's graph (``wcse.stages.GRAPH``)."""

    name: str
    needs: tuple[str, ...]  # stages whose outputs it reads
    output: str  # what it builds, in a line (``python -m wcse.stages`` lists them)
    plan: Callable[[RunContext, Inputs], Any]  # its output's addresses; builds nothing
    build: Callable[[RunContext, Inputs, Any], dict[str, Any]]  # builds what is missing; its summary part
    missing: Callable[[RunContext, Any], list[str]] = _nothing_missing  # what of the output is not cached
    how: str = ""  # how to build its artifacts when they are missing (the error says it)
