from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import CONF, compose_config
from wcse.budget import (
    MATCHED_UNIT,
    WC_ROUNDING,
    Cost,
    SampleBudget,
    check_prices,
    nominal_flops,
    plan,
    realised_cost,
    realised_ratio,
)
from wcse.records import Sample

GEMMA = {"wc_params": 9e9, "se_params": 27e9}
GEMINI = {"wc_price": 0.30, "se_price": 10.50}  # Flash / Pro, USD per 1M output tokens


def _sample(i: int, prompt_tokens: int, generated_tokens: int) -> Sample:
    return Sample(
        key=f"k{i}", model="m", dataset="d", problem_id="p", index=i, seed=0, params={}, prompt="q",
        text="a", prompt_tokens=prompt_tokens, generated_tokens=generated_tokens, finish_reason="stop",
        backend="toy", seconds=0.0,
    )


def test_default_rounding_is_nearest() -> None:
    assert WC_ROUNDING == "nearest"


@pytest.mark.parametrize(("se", "wc"), [(1, 3), (10, 30)])
def test_gemma2_compute_matched(se: int, wc: int) -> None:
    assert plan(se, mode="compute", **GEMMA).wc_samples == wc


def test_gemini_price_matched_and_scaled() -> None:
    assert plan(1, mode="price", **GEMINI).wc_samples == 35
    assert plan(1, mode="price", **GEMINI, rounding="floor").wc_samples == 35  # not 34.999... -> 34
    assert plan(1, mode="price", **GEMINI, scale=0.15).wc_samples == 5  # 5.25
    assert plan(2, mode="price", **GEMINI).wc_samples == 70


def test_number_matched_is_equal() -> None:
    for se in (1, 7, 30):
        assert plan(se, mode="number", **GEMMA).wc_samples == se


def test_rounding_edge_cases() -> None:
    ratio = {"wc_params": 1.0, "se_params": 2.94}
    assert plan(10, mode="compute", **ratio).wc_samples == 29  # 29.4
    assert plan(10, mode="compute", **ratio, rounding="floor").wc_samples == 29
    assert plan(10, mode="compute", **ratio, rounding="ceil").wc_samples == 30
    half = {"wc_params": 2.0, "se_params": 5.0}
    assert plan(1, mode="compute", **half).wc_samples == 3  # 2.5: halves go up
    assert plan(1, mode="compute", **half, rounding="floor").wc_samples == 2
    # A WC model bigger than the SE one: nearest and ceil still give one sample.
    assert plan(1, mode="compute", wc_params=27e9, se_params=9e9).wc_samples == 1
    assert plan(1, mode="compute", wc_params=27e9, se_params=9e9, rounding="ceil").wc_samples == 1


def test_floor_never_exceeds_the_budget() -> None:
    rng = random.Random(0)
    for _ in range(500):
        wc_params, se_params = rng.randint(1, 100) * 1e8, rng.randint(1, 100) * 1e8
        se = rng.randint(1, 50)
        if se * se_params < wc_params:
            continue  # not even one WC sample fits: floor raises (tested below)
        params = {"wc_params": wc_params, "se_params": se_params}
        wc = plan(se, mode="compute", **params, rounding="floor").wc_samples
        assert wc * int(wc_params) <= se * int(se_params) < (wc + 1) * int(wc_params)


def test_floor_refuses_a_budget_below_one_sample() -> None:
    with pytest.raises(ValueError, match="less than one"):
        plan(1, mode="compute", wc_params=27e9, se_params=9e9, rounding="floor")


def test_plan_reports_nominal_and_realised_ratio() -> None:
    budget = plan(1, mode="price", **GEMINI, scale=0.15)
    assert budget == SampleBudget(
        se_samples=1, wc_samples=5, mode="price", nominal_ratio=5.25, realised_ratio=5.0
    )
    assert plan(10, mode="compute", wc_params=1.0, se_params=2.94).realised_ratio == pytest.approx(2.9)
    assert plan(3, mode="compute", **GEMMA).to_dict()["wc_samples"] == 9


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"se_samples": 1, "mode": "flops", **GEMMA}, "mode"),
        ({"se_samples": 0, "mode": "compute", **GEMMA}, "se_samples"),
        ({"se_samples": 2.0, "mode": "compute", **GEMMA}, "se_samples"),
        ({"se_samples": 1, "mode": "compute", "wc_params": 0, "se_params": 27e9}, "wc_params"),
        ({"se_samples": 1, "mode": "compute", "wc_params": 9e9, "se_params": -1.0}, "se_params"),
        ({"se_samples": 1, "mode": "compute", "wc_params": 9e9}, "se_params"),
        ({"se_samples": 1, "mode": "price", **GEMMA}, "wc_price"),
        ({"se_samples": 1, "mode": "price", "wc_price": 0.3, "se_price": float("nan")}, "se_price"),
        ({"se_samples": 1, "mode": "number", "scale": 0.0}, "scale"),
        ({"se_samples": 1, "mode": "compute", **GEMMA, "rounding": "up"}, "rounding"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, names: str) -> None:
    se = kwargs.pop("se_samples")
    with pytest.raises(ValueError, match=names):
        plan(se, **kwargs)


def test_realised_cost_is_exact() -> None:
    samples = [_sample(0, 100, 50), _sample(1, 100, 250)]
    cost = realised_cost(samples, params=9e9, price_in_per_mtok=0.075, price_out_per_mtok=0.30)
    assert cost == Cost(
        samples=2,
        prompt_tokens=200,
        generated_tokens=300,
        flops=2 * 9e9 * 500,
        dollars=200 * 0.075 / 1e6 + 300 * 0.30 / 1e6,
    )
    assert cost.to_dict()["flops"] == 9e12
    assert realised_cost(samples, params=9e9, price_out_per_mtok=0.30).dollars == 300 * 0.30 / 1e6
    assert realised_cost(samples, params=9e9).dollars is None
    assert realised_cost([], params=9e9) == Cost(0, 0, 0, 0.0, None)


def test_realised_cost_errors() -> None:
    with pytest.raises(ValueError, match="params"):
        realised_cost([], params=0)
    with pytest.raises(ValueError, match="price_out_per_mtok"):
        realised_cost([], params=1e9, price_in_per_mtok=0.1)
    with pytest.raises(ValueError, match="price_out_per_mtok"):
        realised_cost([], params=1e9, price_out_per_mtok=-1.0)


def test_nominal_flops_matches_at_the_matched_budget() -> None:
    assert nominal_flops(7500, 1, 300.0, 27e9) == 7500 * 1 * 300 * 2 * 27e9
    assert nominal_flops(7500, 30, 300.0, 9e9) == nominal_flops(7500, 10, 300.0, 27e9)


def test_a_model_of_unknown_size_costs_dollars_and_no_flops() -> None:
    """Gemini has no parameter count: its FLOPs are None (not 0, not a crash), its dollars come from
    the billed tokens, and the WC/SE ratio of a price-matched run is in dollars."""
    flash = realised_cost([_sample(0, 1000, 300)] * 35, params=None, price_in_per_mtok=0.075, price_out_per_mtok=0.30)
    pro = realised_cost([_sample(0, 1000, 300)], params=None, price_in_per_mtok=3.50, price_out_per_mtok=10.50)
    assert flash.flops is None and flash.to_dict()["flops"] is None
    assert flash.dollars == pytest.approx(35 * (1000 * 0.075 + 300 * 0.30) / 1e6)
    assert pro.dollars == pytest.approx((1000 * 3.50 + 300 * 10.50) / 1e6)
    assert realised_ratio(flash, pro, "flops") is None
    # 35 Flash samples cost what one Pro sample does in output tokens; Flash's prompts are cheaper still.
    assert realised_ratio(flash, pro, MATCHED_UNIT["price"]) == pytest.approx(
        35 * (75 + 90) / (3500 + 3150)
    )
    gemma = realised_cost([_sample(0, 100, 50)] * 3, params=9e9)
    assert realised_ratio(gemma, realised_cost([_sample(0, 100, 50)], params=27e9), MATCHED_UNIT["compute"]) == 1.0
    assert realised_ratio(gemma, realised_cost([], params=27e9), "flops") is None  # SE spent nothing
    assert realised_ratio(gemma, gemma, "dollars") is None  # unpriced
    with pytest.raises(ValueError, match="unit"):
        realised_ratio(gemma, gemma, "tokens")


PRICED = {"price_in_per_mtok": 0.075, "price_out_per_mtok": 0.30, "prices_date": "2024-08", "prices_source": "s"}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"prices_date": None}, r"needs \['prices_date'\]"),
        ({"prices_source": ""}, r"needs \['prices_source'\]"),
        ({"price_in_per_mtok": None}, r"needs \['price_in_per_mtok'\]"),
        ({"price_out_per_mtok": -1.0}, "price_out_per_mtok must be a finite number >= 0"),
        ({"price_in_per_mtok": None, "price_out_per_mtok": None}, r"\['prices_date', 'prices_source'\] given without prices"),
    ],
)
def test_a_price_table_carries_both_prices_their_date_and_source(change: dict, error: str) -> None:
    check_prices("model_pair.wc", **PRICED)
    check_prices("model_pair.wc", **dict.fromkeys(PRICED))  # an unpriced model
    with pytest.raises(ValueError, match=r"model_pair\.wc.*" + error):
        check_prices("model_pair.wc", **{**PRICED, **change})


@pytest.mark.parametrize("pair", sorted(p.stem for p in (CONF / "model_pair").glob("*.yaml")))
def test_every_shipped_price_table_is_complete(pair: str, tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, f"model_pair={pair}").model_pair
    for role in ("wc", "se", "student"):
        spec = cfg[role]
        check_prices(f"model_pair.{role}", price_in_per_mtok=spec.price_in_per_mtok,
                     price_out_per_mtok=spec.price_out_per_mtok, prices_date=spec.prices_date,
                     prices_source=spec.prices_source)
    if pair == "gemini":  # the paper's Aug-2024 prices, per model
        assert (cfg.wc.price_in_per_mtok, cfg.wc.price_out_per_mtok, cfg.wc.params) == (0.075, 0.30, None)
        assert (cfg.se.price_in_per_mtok, cfg.se.price_out_per_mtok, cfg.se.params) == (3.50, 10.50, None)
        assert cfg.wc.prices_date == cfg.se.prices_date == "2024-08"
        assert "Flash" in cfg.wc.prices_source and "Pro" in cfg.se.prices_source
