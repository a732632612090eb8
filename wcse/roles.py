"""The roles models play, and which model plays each one in a run.

The paper's three models are the weaker-cheaper sampler (WC), the stronger-expensive sampler
(SE) and a separate Student-LM; WC and SE are the two *samplers* whose data is compared, and any
of the three can be the finetuning *target* (the setup names it). This module is the one place
these names are declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wcse import models

ROLES = ("student", "wc", "se")  # every model of a pair, weakest first
SAMPLERS = ("wc", "se")  # the models whose synthetic data is compared


@dataclass(frozen=True)
class Models:
    """Where each role's model is and what cache keys call it, for one run.

    ``ladder`` maps toy roles to their checkpoint folders (``toy:<role>`` paths); ``ladder_ids``
    names rungs that are built during the run, whose weights cannot be hashed before they exist:
    such a rung is named by its pretraining artifact's key, which fixes its recipe.
    """

    pair: Any  # the model_pair config group
    ladder: Mapping[str, Path]
    ladder_ids: Mapping[str, str] = field(default_factory=dict)
    _fingerprints: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def spec(self, role: str) -> Any:
        return self.pair[role]

    def path(self, role: str, *, target: bool = False) -> str:
        """The loadable path of ``role``'s model; ``target``: the model finetuned in that role."""
        spec = self.pair[role]
        return self.resolve((spec.target or spec.path) if target else spec.path)

    def id(self, role: str, *, target: bool = False) -> str:
        """Name plus content fingerprint: cache keys change when the weights do."""
        spec = self.pair[role]
        return f"{spec.name}@{self.fingerprint((spec.target or spec.path) if target else spec.path)}"

    def resolve(self, path: str) -> str:
        """A loadable path; a rung built during the run is where it will be (planning precedes it)."""
        role = path[len(models.TOY_PREFIX) :] if path.startswith(models.TOY_PREFIX) else None
        if role in self.ladder_ids:
            return str(self.ladder[role])
        return models.resolve(path, self.ladder)

    def fingerprint(self, path: str) -> str:
        role = path[len(models.TOY_PREFIX) :] if path.startswith(models.TOY_PREFIX) else None
        if role in self.ladder_ids:
            return self.ladder_ids[role]
        if path not in self._fingerprints:  # hashing weights once per run: several stages name one model
            self._fingerprints[path] = models.fingerprint(self.resolve(path))
        return self._fingerprints[path]
