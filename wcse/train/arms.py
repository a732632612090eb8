"""The SFT data of each training arm, built from the filtered (kept) samples of WC and SE.

Arms:

- ``wc`` / ``se``: every kept row of that model (the paper's main comparison).
- ``mix``: WC and SE rows together at a WC fraction (the mixing ablation). Its size is that of
  the smaller of the two sets, so it trains on no more data than either pure arm and a change
  of fraction changes only the composition, never the amount; with fraction 1.0 it is WC data
  subsampled to the size of the smaller set (the dataset-size ablation).
- ``wc_one`` / ``se_one``: one kept row per problem, so the data has the model's coverage but
  no diversity (the ablation that separates the two).
- ``mix_budget``: the sampling budget split between the models (the paper's 15 WC + 5 SE samples
  per problem at the high budget): the kept rows among WC's first ``round(share * S_WC)`` and
  SE's first ``round((1 - share) * S_SE)`` samples of each problem, so every share costs the same
  sampling compute (:func:`budget_split`; budgets nest, so nothing is sampled again).

Every returned row is a copy with ``source`` set to the model it came from, so the exact
composition of an arm is recorded in its own data. Choices are seeded from strings, never from
``hash()``, so the same rows and seed give the same arm in every process.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from wcse.errors import DataError

_ARM_SOURCES = {
    "wc": ("wc",), "se": ("se",), "mix": ("wc", "se"), "wc_one": ("wc",), "se_one": ("se",), "mix_budget": ("wc", "se"),
}
ARMS = tuple(_ARM_SOURCES)
LABELS = {  # how reports name each arm's data
    "wc": "WC data",
    "se": "SE data",
    "mix": "WC+SE mix",
    "wc_one": "WC, 1 per problem",
    "se_one": "SE, 1 per problem",
    "mix_budget": "WC+SE budget split",
}


def arm_sources(arm: str) -> tuple[str, ...]:
    """The filtered sets ``arm`` reads, so only those are sampled and verified."""
    if arm not in _ARM_SOURCES:
        raise ValueError(f"unknown arm {arm!r}; known: {list(ARMS)}")
    return _ARM_SOURCES[arm]


def budget_split(wc_share: float, wc_samples: int, se_samples: int) -> dict[str, int]:
    """Samples per problem each model contributes to ``mix_budget`` when ``wc_share`` of the
    sampling compute goes to WC (rounded to nearest, halves up): at the paper's high budget
    (S_SE = 10, S_WC = 30) a share of 0.5 is 15 WC + 5 SE."""
    if isinstance(wc_share, bool) or not isinstance(wc_share, int | float) or not 0 <= wc_share <= 1:
        raise ValueError(f"arm 'mix_budget': setup.mix_budget_wc_share must be a number in [0, 1], got {wc_share!r}")
    return {"wc": math.floor(wc_share * wc_samples + 0.5), "se": math.floor((1 - wc_share) * se_samples + 0.5)}


def build_arm(
    arm: str,
    rows: Mapping[str, Sequence[dict]],
    *,
    mix_wc_fraction: float = 0.5,
    split: Mapping[str, int] | None = None,
    seed: int = 0,
) -> list[dict]:
    """The SFT rows of ``arm`` from ``rows[source]``, the kept rows of each source it reads.

    ``mix_budget`` keeps each source's rows of sample index below ``split[source]``
    (:func:`budget_split`). ``mix`` takes ``round(mix_wc_fraction * n)`` WC rows (halves up) and the rest of
    ``n = min(len(wc), len(se))`` from SE, each drawn without replacement and kept in input order.
    """
    sources = arm_sources(arm)
    missing = [source for source in sources if source not in rows]
    if missing:
        raise ValueError(f"arm {arm!r} reads the filtered rows of {list(sources)}; missing: {missing}")
    tagged = {source: [{**row, "source": source} for row in rows[source]] for source in sources}
    if arm == "mix":
        out = _mix(tagged["wc"], tagged["se"], mix_wc_fraction, seed)
    elif arm == "mix_budget":
        if split is None:
            raise ValueError("arm 'mix_budget' needs the samples per problem of each model (split)")
        out = [row for source in sources for row in tagged[source] if _index(arm, row) < split[source]]
    elif arm.endswith("_one"):
        out = _one_per_problem(arm, tagged[sources[0]], seed)
    else:
        out = tagged[sources[0]]
    if not out:
        sizes = ", ".join(f"{source}: {len(rows[source])} rows" for source in sources)
        raise DataError(
            f"arm {arm!r} has no SFT rows ({sizes}): the filter kept none of the samples it reads; sample more"
            " (budget), keep cut-off ones (verifier.keep_truncated=true) or filter label-free (verifier=none)"
        )
    return out


def _mix(wc: list[dict], se: list[dict], wc_fraction: float, seed: int) -> list[dict]:
    if isinstance(wc_fraction, bool) or not isinstance(wc_fraction, int | float) or not 0 <= wc_fraction <= 1:
        raise ValueError(f"arm 'mix': mix_wc_fraction must be a number in [0, 1], got {wc_fraction!r}")
    n = min(len(wc), len(se))
    n_wc = math.floor(wc_fraction * n + 0.5)
    rng = random.Random(f"mix:{seed}")
    return _draw(wc, n_wc, rng) + _draw(se, n - n_wc, rng)


def _index(arm: str, row: dict) -> int:
    if "index" not in row:
        raise ValueError(f"arm {arm!r} needs the sample index in every row (rows of verify v3); got keys {sorted(row)}")
    return row["index"]


def _draw(rows: list[dict], k: int, rng: random.Random) -> list[dict]:
    """``k`` rows without replacement, in their input order (the trainer shuffles anyway)."""
    return [rows[i] for i in sorted(rng.sample(range(len(rows)), k))]


def _one_per_problem(arm: str, rows: list[dict], seed: int) -> list[dict]:
    """One row per problem, in order of first appearance.

    The choice for a problem is seeded by the problem id, so it does not depend on which other
    problems are present.
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if "problem_id" not in row:
            raise ValueError(f"arm {arm!r} needs a problem_id in every row; got keys {sorted(row)}")
        groups.setdefault(row["problem_id"], []).append(row)
    return [random.Random(f"one:{seed}:{pid}").choice(group) for pid, group in groups.items()]
