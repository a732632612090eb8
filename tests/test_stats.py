"""Intervals and estimators (wcse.stats): Wilson's interval, Student's t, means over seeds."""

from __future__ import annotations

import pytest

from wcse.stats import estimate, t95, wilson_interval
from wcse.summary import Rate


@pytest.mark.parametrize(
    ("successes", "total", "low", "high"),
    [
        (0, 10, 0.0, 0.27754),  # high = (z^2/n) / (1 + z^2/n)
        (5, 10, 0.23659, 0.76341),  # symmetric about 1/2
        (10, 10, 0.72246, 1.0),  # mirror of 0/10
        (0, 0, 0.0, 1.0),
    ],
)
def test_wilson_interval_known_values(successes: int, total: int, low: float, high: float) -> None:
    got = wilson_interval(successes, total)
    assert got == pytest.approx((low, high), abs=1e-5)


def test_wilson_interval_always_holds_its_estimate() -> None:
    """Rounding put 6/6's upper bound at 0.9999999999999999 (146 such n <= 400): an interval
    that misses its own point breaks error bars, which must not point inwards."""
    for total in range(1, 400):
        for successes in range(total + 1):
            low, high = wilson_interval(successes, total)
            assert 0 <= low <= successes / total <= high <= 1, (successes, total)


def test_rate_of_nothing_has_no_value() -> None:
    assert Rate.of(0, 0).model_dump() == {"value": None, "low": 0.0, "high": 1.0, "n": 0}


def test_t_quantiles_match_the_table() -> None:
    assert [round(t95(df), 3) for df in (1, 2, 4, 10, 30)] == [12.706, 4.303, 2.776, 2.228, 2.042]
    with pytest.raises(ValueError, match="df >= 1"):
        t95(0)


def test_estimate_over_runs() -> None:
    one = estimate([0.4], (0.35, 0.45))
    assert (one.mean, one.low, one.high, one.method) == (0.4, 0.35, 0.45, "95% Wilson (1 run)")
    two = estimate([0.4, 0.5])
    assert (two.low, two.high, two.method) == (0.4, 0.5, "min-max of 2 runs")
    three = estimate([0.40, 0.42, 0.44])
    half = t95(2) * 0.02 / 3**0.5
    assert (three.low, three.high) == pytest.approx((0.42 - half, 0.42 + half)) and three.n == 3
    assert estimate([0.0, 0.01, 0.0]).low == 0.0  # a rate's interval is cut at 0
    assert estimate([-1.0, 0.0, 1.0], proportion=False).low < -1  # a difference's is not
    assert estimate([None, None]) is None and estimate([None, 0.3]).n == 1
