"""``python -m wcse.plan``: a run's or a grid's cost before anything runs, checked against a hand
computation (FLOPs = 2 x params x tokens sampled, prompt included, as wcse.budget.realised_cost
counts them; 6 x params x tokens trained); cells whose budgets are not matched are flagged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf.errors import ConfigKeyError

from tests.conftest import ROOT, SHARED_DATA, needs_data
from wcse.hardware import peak_bf16_tflops
from wcse.plan import assumptions
from wcse.plan.__main__ import main as plan_main

H100 = peak_bf16_tflops("H100") * 1e12  # the plan's default hardware, dense bf16 FLOP/s
TOY_PARAMS = {"wc": 660480, "se": 2009088, "student": 660480}  # conf/model_pair/toy.yaml


def plan(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, dict]:
    """The plan, in this process: exit status, printed tables, its JSON."""
    out = tmp_path / "plan.json"
    status = plan_main([*args, f"paths.cache_dir={tmp_path / 'cache'}", "--json", str(out)])
    return status, capsys.readouterr().out, json.loads(out.read_text())


def sampling(cell: dict, role: str) -> dict:
    return next(s for s in cell["sampling"] if s["role"] == role)


def test_a_toy_grid_is_planned_without_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, text, result = plan(tmp_path, capsys, "experiment=toy_tiny", "-m", "setup=kd,w2s", "budget=low,high")
    assert status == 0
    cells = result["cells"]
    assert [c["label"] for c in cells] == ["setup=kd,budget=low", "setup=kd,budget=high", "setup=w2s,budget=low",
                                          "setup=w2s,budget=high"]
    assert "**total** (4 cells, each piece of work once)" in text and "| setup=w2s,budget=high |" in text

    w2s_low = cells[2]  # by hand: 40 problems, 3 WC and 1 SE sample each, 24 tokens per toy solution
    assert w2s_low["problems"] == 40 and (w2s_low["budget"]["wc_samples"], w2s_low["budget"]["se_samples"]) == (3, 1)
    wc, se = sampling(w2s_low, "wc"), sampling(w2s_low, "se")
    assert (wc["requests"], se["requests"]) == (120, 40)
    assert wc["generated_tokens"] == 120 * 24 and se["generated_tokens"] == 40 * 24
    assert wc["prompt_tokens"] == pytest.approx(3 * se["prompt_tokens"])  # the same 40 prompts, 3 times
    for s in (wc, se):
        tokens = s["prompt_tokens"] + s["generated_tokens"]
        assert s["flops"] == pytest.approx(2 * TOY_PARAMS[s["role"]] * tokens)
        # sampler=hf computes every sample's prompt; GPU time at the default 15% MFU of an H100
        assert s["gpu_hours"] == pytest.approx(s["flops"] / (H100 * 0.15) / 3600)
        assert s["dollars"] is None
    # finetuning: toy_tiny's 6 steps x 8 rows x (zero-shot prompt + 24 tokens), 6 FLOPs per parameter and token
    for f in w2s_low["finetunes"]:
        assert (f["steps"], f["global_batch"], f["gpus"]) == (6, 8, 1)
        assert f["tokens"] == pytest.approx(6 * 8 * f["row_tokens"])
        assert f["flops"] == pytest.approx(6 * TOY_PARAMS["se"] * f["tokens"])
        assert f["gpu_hours"] == pytest.approx(f["flops"] / (H100 * 0.35) / 3600)
    # compute-matched with prompts counted: 3 x 659,328 / 2,006,784 = 0.986, within the 5% tolerance
    assert w2s_low["ratios"]["flops"] == pytest.approx(3 * TOY_PARAMS["wc"] / TOY_PARAMS["se"])
    assert w2s_low["flags"] == []

    total = result["total"]  # the high budget's stores hold the low budget's samples: counted once
    assert total["samples"] == 40 * (30 + 10) and total["finetunes"] == 8  # 4 cells x 2 data arms
    assert total["sampling_flops"] == pytest.approx(sum(s["flops"] for s in cells[1]["sampling"]))


def test_cells_whose_budgets_are_not_matched_are_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The toy pair at 0.15x of the budget: 0.46 WC samples per SE sample round up to 1, so the
    WC arm spends 2.2x what it was given; both the rounding and the ratio are flagged."""
    status, text, result = plan(tmp_path, capsys, "experiment=toy_tiny", "-m", "budget.scale=1.0,0.15")
    assert status == 0
    full, small = result["cells"]
    assert full["flags"] == []
    assert small["budget"]["wc_samples"] == 1
    (rounding,) = [f for f in small["flags"] if f.startswith("rounding")]
    assert "1 WC samples per 1 SE for a nominal 0.46" in rounding
    (ratio,) = [f for f in small["flags"] if f.startswith("budget not matched")]
    assert "planned WC/SE flops ratio 0.329 of a 0.15 x budget" in ratio
    assert "budget not matched" in text


def test_the_gemini_arm_is_priced_and_flagged_on_input_prices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Gemini Flash vs Pro on toy problems: dollars by hand from the token counts and the price
    table; matched on output prices (35x), the input prices differ 46.7x, which is flagged."""
    status, text, result = plan(tmp_path, capsys, "experiment=gemini_math", "dataset=toy_arith", "dataset.toy.n_train=100",
                                "setup=kd", "plan.hardware.gpu_hour_usd=2.0")
    assert status == 0
    (cell,) = result["cells"]
    wc, se = sampling(cell, "wc"), sampling(cell, "se")
    assert (wc["per_problem"], se["per_problem"]) == (35, 1) and wc["flops"] is None and wc["gpu_hours"] is None
    for s, (price_in, price_out) in ((wc, (0.075, 0.30)), (se, (3.50, 10.50))):
        assert s["dollars"] == pytest.approx((s["prompt_tokens"] * price_in + s["generated_tokens"] * price_out) / 1e6)
    assert cell["ratios"]["dollars"] == pytest.approx(wc["dollars"] / se["dollars"])
    (flag,) = cell["flags"]
    assert flag.startswith("budget not matched: planned WC/SE dollars ratio") and "input prices differ 46.7x" in flag
    # the grid's price: the API calls plus the GPU-hours (finetuning, evaluation) at $2 each
    total = result["total"]
    hours = total["train_gpu_hours"] + total["eval_gpu_hours"]
    assert total["sampling_gpu_hours"] is None and f"${total['sampling_dollars'] + 2.0 * hours:,.2f} in all" in text


def test_a_cell_that_cannot_be_planned_is_shown_and_the_others_are_planned(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    status, text, result = plan(tmp_path, capsys, "experiment=toy_tiny", "-m", "budget=low,price_matched")
    assert status == 1
    ok, bad = result["cells"]
    assert ok["error"] is None and ok["sampling"]
    assert "price" in bad["error"] and "**not planned**" in text and "1 not planned" in text


def test_sweeps_need_multirun(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"add -m"):
        plan_main(["experiment=toy_tiny", "setup=kd,w2s", f"paths.cache_dir={tmp_path}"])


def test_the_assumptions_come_from_defaults_the_cluster_file_and_the_command_line(tmp_path: Path) -> None:
    local = tmp_path / "plan.yaml"  # conf/local/plan.yaml (git-ignored) in a checkout
    assert assumptions.load([], local=local).hardware.peak() == 989.0  # no file: H100
    local.write_text("hardware: {gpu: A100, gpu_hour_usd: 2.5}\n")
    a = assumptions.load(["plan.hardware.gpu_hour_usd=1.8", "plan.generated_tokens.math=512"], local=local)
    assert (a.hardware.peak(), a.hardware.gpu_hour_usd, a.generated_tokens["math"]) == (312.0, 1.8, 512.0)
    with pytest.raises(ValueError, match=r"plan.hardware.train_mfu=1.5: must be in \(0, 1\]"):
        assumptions.load(["plan.hardware.train_mfu=1.5"], local=local)
    with pytest.raises(ValueError, match="plan.hardware.gpu='TPU' is not in wcse.hardware's table: set plan.hardware.peak_tflops"):
        assumptions.load(["plan.hardware.gpu=TPU"], local=local)
    assert assumptions.load(["plan.hardware.gpu=TPU", "plan.hardware.peak_tflops=459"], local=local).hardware.peak() == 459
    local.write_text("hardware: {gpu_hour_dollars: 2.5}\n")
    with pytest.raises(ConfigKeyError, match="gpu_hour_dollars"):
        assumptions.load([], local=local)


@pytest.fixture(scope="module")
def math_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for both real-MATH plans: the decontaminated MATH dataset is built once."""
    return tmp_path_factory.mktemp("plan-cache")


def run_plan(tmp_path: Path, cache: Path, *args: str) -> tuple[str, dict]:
    """``python -m wcse.plan ARGS`` as a user types it, on the real benchmark files."""
    out = tmp_path / "plan.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WCSE_CACHE_DIR": str(cache), "WCSE_DATA_DIR": str(SHARED_DATA)}
    done = subprocess.run([sys.executable, "-m", "wcse.plan", *args, "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


@pytest.mark.slow
@needs_data("math/train.jsonl", "math/test.jsonl", "math500/test.jsonl")
def test_the_papers_gemma2_math_grid(tmp_path: Path, math_cache: Path) -> None:
    """The issue's command on the real MATH train split (7,500 problems, 7,229 once decontaminated), one cell by hand."""
    text, result = run_plan(tmp_path, math_cache, "experiment=gemma2_math", "-m", "setup=kd,self_improve,w2s", "budget=low,high")
    cells = result["cells"]
    assert [c["label"] for c in cells] == [f"setup={s},budget={b}" for s in ("kd", "self_improve", "w2s") for b in ("low", "high")]
    assert "**total** (6 cells, each piece of work once)" in text
    kd_low = cells[0]
    n = 7500 - 271  # MATH train less the problems that overlap MATH-500 or validation (decontamination; README)
    assert kd_low["problems"] == n and kd_low["flags"] == []
    wc, se = sampling(kd_low, "wc"), sampling(kd_low, "se")
    assert (wc["requests"], se["requests"]) == (3 * n, n)
    assert wc["generated_tokens"] == 3 * n * 409  # plan.generated_tokens.math: nothing stored yet
    prompt = se["prompt_tokens"] / n  # mean few-shot prompt (chars / 2.5: no Gemma tokenizer here)
    assert 300 < prompt < 2000 and wc["prompt_tokens"] == pytest.approx(3 * se["prompt_tokens"])
    assert wc["flops"] == pytest.approx(2 * 9e9 * 3 * n * (prompt + 409))
    assert se["flops"] == pytest.approx(2 * 27e9 * n * (prompt + 409))
    # vLLM: a problem's prompt computed once for its samples (prefix caching), 15% MFU
    assert wc["gpu_hours"] == pytest.approx(2 * 9e9 * (3 * n * 409 + n * prompt) / (H100 * 0.15) / 3600)
    # kd finetunes Gemma-7B: 2,400 steps x 8 rows (the paper's schedule) of prompt + 409 tokens, 8 GPUs
    for f in kd_low["finetunes"]:
        assert (f["target"], f["steps"], f["global_batch"], f["gpus"]) == ("google/gemma-7b", 2400, 8, 8)
        assert f["flops"] == pytest.approx(6 * 7e9 * 2400 * 8 * f["row_tokens"])
        assert f["gpu_hours"] == pytest.approx(f["flops"] / (H100 * 0.35) / 3600)
    total = result["total"]  # each store once, at its largest budget: 30 + 10 samples per problem
    assert total["samples"] == n * 40 and total["finetunes"] == 12 and total["failed_cells"] == 0


@pytest.mark.slow
@needs_data("math/train.jsonl", "math/test.jsonl", "math500/test.jsonl")
def test_the_papers_gemini_arm(tmp_path: Path, math_cache: Path) -> None:
    """Gemini Flash vs Pro on MATH, price-matched, and the economical 0.15x arm: both flagged,
    since Pro's input tokens cost 46.7x Flash's, not the 35x the budget matches on."""
    text, result = run_plan(tmp_path, math_cache, "experiment=gemini_math", "-m", "budget.scale=1.0,0.15", "setup=kd")
    full, cheap = result["cells"]
    assert (sampling(full, "wc")["per_problem"], sampling(cheap, "wc")["per_problem"]) == (35, 5)
    for cell in (full, cheap):
        assert any("input prices differ 46.7x" in f for f in cell["flags"])
        wc = sampling(cell, "wc")
        assert wc["dollars"] == pytest.approx((wc["prompt_tokens"] * 0.075 + wc["generated_tokens"] * 0.30) / 1e6)
    assert result["total"]["sampling_dollars"] > 0 and "API $" in text
