"""Sampling-budget arithmetic: how many WC samples one SE sample buys, and what sampling really cost.

The paper (Bansal et al. 2024, Eq. 2-4) matches budgets by FLOPs: a model with P parameters spends
about 2P FLOPs per token, so ``S_WC = S_SE * P_SE / P_WC`` (Gemma2 9B vs 27B: 3 WC samples per SE
sample). For API models with unknown size it matches by price per 1M output tokens instead (Gemini
1.5 Flash vs Pro: 35 per SE sample), and also runs a cheaper arm at ``scale`` 0.15 of that budget.

``WC_ROUNDING`` is the rule that turns the exact, usually fractional, count into a sample count:
``S_WC = floor(S_SE * ratio * scale + 0.5)`` (nearest, halves up), at least 1. ``"floor"`` is the
conservative alternative (the WC arm never spends more than the SE arm) and ``"ceil"`` the generous
one. The arithmetic is exact on the decimal values given (``Fraction`` of each float's shortest
repr), so 10.50 / 0.30 is 35 and not 34.999..., which ``floor`` would turn into 34.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from wcse.records import Sample

MODES = ("compute", "price", "number")
ROUNDINGS = ("nearest", "floor", "ceil")
WC_ROUNDING = "nearest"


def _exact(value: float, name: str) -> Fraction:
    """A positive finite number as the exact decimal it was written as; ``name`` goes in the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def _exact_ratio(
    mode: str,
    wc_params: float | None,
    se_params: float | None,
    wc_price: float | None,
    se_price: float | None,
) -> Fraction:
    """WC samples per SE sample at equal cost under ``mode``; only the inputs the mode uses are checked."""
    if mode == "compute":
        if wc_params is None or se_params is None:
            raise ValueError("mode='compute' needs both wc_params and se_params")
        return _exact(se_params, "se_params") / _exact(wc_params, "wc_params")
    if mode == "price":
        if wc_price is None or se_price is None:
            raise ValueError("mode='price' needs both wc_price and se_price (USD per 1M output tokens)")
        return _exact(se_price, "se_price") / _exact(wc_price, "wc_price")
    if mode == "number":
        return Fraction(1)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def _round(exact: Fraction, rounding: str) -> int:
    if rounding == "nearest":
        return max(1, math.floor(exact + Fraction(1, 2)))
    if rounding == "ceil":
        return max(1, math.ceil(exact))
    if rounding == "floor":
        count = math.floor(exact)
        if count < 1:
            # Rounding up to 1 would break the one promise "floor" makes: never exceed the budget.
            raise ValueError(
                f"the SE budget affords {float(exact):.3g} WC samples, less than one (rounding='floor')"
            )
        return count
    raise ValueError(f"unknown rounding {rounding!r}; expected one of {ROUNDINGS}")


@dataclass(frozen=True)
class SampleBudget:
    """Both arms of one comparison, keeping the exact ratio next to what rounding made of it."""

    se_samples: int
    wc_samples: int
    mode: str
    nominal_ratio: float  # exact ratio * scale
    realised_ratio: float  # wc_samples / se_samples

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(
    se_samples: int,
    *,
    mode: str,
    wc_params: float | None = None,
    se_params: float | None = None,
    wc_price: float | None = None,
    se_price: float | None = None,
    scale: float = 1.0,
    rounding: str = WC_ROUNDING,
) -> SampleBudget:
    """Match a WC sample count to ``se_samples`` SE samples; ``scale`` shrinks or grows the WC arm."""
    if isinstance(se_samples, bool) or not isinstance(se_samples, int) or se_samples < 1:
        raise ValueError(f"se_samples must be an integer >= 1, got {se_samples!r}")
    ratio = _exact_ratio(mode, wc_params, se_params, wc_price, se_price) * _exact(scale, "scale")
    wc_samples = _round(se_samples * ratio, rounding)
    return SampleBudget(se_samples, wc_samples, mode, float(ratio), wc_samples / se_samples)


SPENDS = ("samples", "questions")


def spread(plan: SampleBudget, problems: int, pool: int, spend: str = "samples") -> dict[str, tuple[int, int]]:
    """(train problems, samples per problem) of each sampler role: SE samples its count on the first
    ``problems`` of a train pool of ``pool``; WC spends its matched budget on more samples of the same
    problems (``samples``, the paper) or on as many samples as SE of more problems (``questions``:
    ``round(problems * S_WC / S_SE)`` of them, the first ones of the pool)."""
    if not 1 <= problems <= pool:
        raise ValueError(f"budget.problems={problems}: must be in 1..{pool} (the train problems there are)")
    if spend == "samples":
        return {"se": (problems, plan.se_samples), "wc": (problems, plan.wc_samples)}
    if spend != "questions":
        raise ValueError(f"budget.wc_spend={spend!r}: expected one of {SPENDS}")
    wc_problems = math.floor(Fraction(problems * plan.wc_samples, plan.se_samples) + Fraction(1, 2))
    if wc_problems > pool:
        raise ValueError(
            f"budget.wc_spend=questions: WC's budget buys {wc_problems} problems at {plan.se_samples} sample(s) each, "
            f"the train pool has {pool}; lower budget.problems to at most {pool * plan.se_samples // plan.wc_samples} or grow the pool"
        )
    return {"se": (problems, plan.se_samples), "wc": (wc_problems, plan.se_samples)}


def nominal_flops(
    n_problems: int, samples_per_problem: int, tokens_per_sample: float, params: float
) -> float:
    """Eq. 2, ``n * S * W * 2P``: the planned cost, to set beside :func:`realised_cost`."""
    return float(n_problems * samples_per_problem * tokens_per_sample * 2 * params)


@dataclass(frozen=True)
class Cost:
    """What sampling actually spent, from the token counts logged with each sample (for API
    models, the usage the server reported: what was billed)."""

    samples: int
    prompt_tokens: int
    generated_tokens: int
    flops: float | None  # None when the model's size is unknown (API models)
    dollars: float | None  # None when no price was given

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def realised_cost(
    samples: Iterable[Sample],
    *,
    params: float | None,
    price_in_per_mtok: float | None = None,
    price_out_per_mtok: float | None = None,
) -> Cost:
    """FLOPs count the prompt too (2P per token, Kaplan et al.): the matched budget only holds if
    generations have similar lengths, and this is the check. ``params=None`` (a model of unknown
    size, e.g. Gemini) gives ``flops=None``: its cost is known in dollars only."""
    if params is not None:
        _exact(params, "params")
    if price_out_per_mtok is None and price_in_per_mtok is not None:
        raise ValueError(
            "price_in_per_mtok given without price_out_per_mtok; output tokens are what is priced"
        )
    for name, price in (("price_in_per_mtok", price_in_per_mtok), ("price_out_per_mtok", price_out_per_mtok)):
        if price is not None and (not math.isfinite(price) or price < 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {price!r}")
    count = prompt = generated = 0
    for sample in samples:
        count += 1
        prompt += sample.prompt_tokens
        generated += sample.generated_tokens
    dollars = None
    if price_out_per_mtok is not None:
        dollars = prompt * (price_in_per_mtok or 0.0) / 1e6 + generated * price_out_per_mtok / 1e6
    flops = None if params is None else 2.0 * params * (prompt + generated)
    return Cost(count, prompt, generated, flops, dollars)


# The unit a budget mode matches: the realised WC/SE ratio in it should be close to 1.
MATCHED_UNIT = {"compute": "flops", "price": "dollars"}


def realised_ratio(wc: Cost, se: Cost, unit: str) -> float | None:
    """WC's realised cost over SE's in ``unit`` ("flops" or "dollars"); None where either is
    unknown (no size, no price) or SE spent nothing."""
    if unit not in ("flops", "dollars"):
        raise ValueError(f"unit must be 'flops' or 'dollars', got {unit!r}")
    a, b = getattr(wc, unit), getattr(se, unit)
    return None if a is None or b is None or b == 0 else a / b


def check_prices(
    where: str,
    *,
    price_in_per_mtok: float | None,
    price_out_per_mtok: float | None,
    prices_date: str | None,
    prices_source: str | None,
) -> None:
    """A model's price table: both prices or neither, and with them the date and source they were
    read from (prices change: a dollar figure without them cannot be checked). ``where`` names
    the config node (e.g. ``model_pair.wc``) in the error."""
    prices = {"price_in_per_mtok": price_in_per_mtok, "price_out_per_mtok": price_out_per_mtok}
    provenance = {"prices_date": prices_date, "prices_source": prices_source}
    if all(v is None for v in prices.values()):
        given = [k for k, v in provenance.items() if v is not None]
        if given:
            raise ValueError(f"{where}: {given} given without prices")
        return
    missing = [k for k, v in {**prices, **provenance}.items() if v is None or v == ""]
    if missing:
        raise ValueError(f"{where}: a priced model needs {missing} too (input and output prices, their date and source)")
    for name, price in prices.items():
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
            raise ValueError(f"{where}.{name} must be a finite number >= 0, got {price!r}")
