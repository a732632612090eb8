"""The training arms: which rows each one trains on, exactly and reproducibly."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from wcse.train.arms import ARMS, arm_sources, build_arm


def _rows(source: str, per_problem: dict[str, int]) -> list[dict]:
    """Kept rows as ``verified(role)`` writes them: ``per_problem[pid]`` correct samples of pid."""
    return [
        {"prompt": f"question {pid} Answer :", "completion": f" {source} solution {j} of {pid}", "problem_id": pid, "index": j}
        for pid, n in per_problem.items()
        for j in range(n)
    ]


# WC covers more problems (p3, p4) with more solutions each; SE is smaller: the paper's picture.
ROWS = {
    "wc": _rows("wc", {"p0": 3, "p1": 1, "p2": 4, "p3": 2, "p4": 5}),
    "se": _rows("se", {"p0": 2, "p1": 1, "p2": 3}),
}


def _plain(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "source"} for row in rows]


@pytest.mark.parametrize("arm", ["wc", "se"])
def test_pure_arms_keep_every_row(arm: str) -> None:
    out = build_arm(arm, ROWS)
    assert _plain(out) == ROWS[arm]
    assert {row["source"] for row in out} == {arm}
    assert "source" not in ROWS[arm][0]  # the input rows are not modified


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.3, 0.5, 0.7, 1.0])
def test_mix_has_the_smaller_size_and_the_fraction_to_rounding(fraction: float) -> None:
    out = build_arm("mix", ROWS, mix_wc_fraction=fraction, seed=3)
    n = min(len(ROWS["wc"]), len(ROWS["se"]))  # 6
    counts = Counter(row["source"] for row in out)
    assert len(out) == n
    assert abs(counts["wc"] - fraction * n) <= 0.5 and counts["wc"] + counts["se"] == n
    for source in ("wc", "se"):  # drawn without replacement from that source's rows
        drawn = _plain([row for row in out if row["source"] == source])
        assert len({row["completion"] for row in drawn}) == len(drawn)
        assert all(row in ROWS[source] for row in drawn)


def test_mix_rounds_halves_up() -> None:
    counts = Counter(row["source"] for row in build_arm("mix", ROWS, mix_wc_fraction=0.25))
    assert counts == {"wc": 2, "se": 4}  # 0.25 * 6 = 1.5 -> 2


@pytest.mark.parametrize("arm", ["wc_one", "se_one"])
def test_one_per_problem_keeps_one_correct_row_for_every_covered_problem(arm: str) -> None:
    source = arm_sources(arm)[0]
    out = build_arm(arm, ROWS, seed=1)
    assert [row["problem_id"] for row in out] == list(dict.fromkeys(r["problem_id"] for r in ROWS[source]))
    assert all(row in ROWS[source] for row in _plain(out))


def test_one_per_problem_choice_depends_on_the_seed_and_the_problem_only() -> None:
    chosen = {seed: [row["completion"] for row in build_arm("wc_one", ROWS, seed=seed)] for seed in range(8)}
    assert len({tuple(c) for c in chosen.values()}) > 1  # the seed matters
    fewer = {"wc": [row for row in ROWS["wc"] if row["problem_id"] != "p0"]}
    assert [row["completion"] for row in build_arm("wc_one", fewer, seed=5)] == chosen[5][1:]


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_is_deterministic_given_the_seed(arm: str) -> None:
    split = {"wc": 2, "se": 1}  # read by mix_budget only
    assert build_arm(arm, ROWS, split=split, seed=7) == build_arm(arm, ROWS, split=split, seed=7)


def test_mix_depends_on_the_seed() -> None:
    draws = {tuple(r["completion"] for r in build_arm("mix", ROWS, seed=s)) for s in range(8)}
    assert len(draws) > 1


def test_sources() -> None:
    assert {arm: arm_sources(arm) for arm in ARMS} == {
        "wc": ("wc",), "se": ("se",), "mix": ("wc", "se"), "wc_one": ("wc",), "se_one": ("se",),
        "mix_budget": ("wc", "se"),
    }
    assert build_arm("wc", {"wc": ROWS["wc"]})  # an arm reads only its own sources


@pytest.mark.parametrize(
    ("arm", "rows", "kwargs", "message"),
    [
        ("sc", ROWS, {}, "unknown arm 'sc'"),
        ("mix", {"wc": ROWS["wc"]}, {}, "missing: ['se']"),
        ("mix", ROWS, {"mix_wc_fraction": 1.5}, "mix_wc_fraction"),
        ("mix", ROWS, {"mix_wc_fraction": -0.1}, "mix_wc_fraction"),
        ("mix", ROWS, {"mix_wc_fraction": float("nan")}, "mix_wc_fraction"),
        ("mix", ROWS, {"mix_wc_fraction": True}, "mix_wc_fraction"),
        ("mix", ROWS, {"mix_wc_fraction": "0.5"}, "mix_wc_fraction"),
        ("se", {"se": []}, {}, "arm 'se' has no SFT rows (se: 0 rows)"),
        ("mix", {"wc": ROWS["wc"], "se": []}, {}, "arm 'mix' has no SFT rows (wc: 15 rows, se: 0 rows)"),
        ("wc_one", {"wc": [{"prompt": "q", "completion": " a"}]}, {}, "arm 'wc_one' needs a problem_id"),
    ],
)
def test_errors_name_the_arm_or_parameter(arm: str, rows: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_arm(arm, rows, **kwargs)
