"""The paper's code arm end to end on CPU: ``experiment=gemma2_code`` with a real model.

SmolLM2-135M-Instruct plays WC, SE and the target (the Gemma2 pair's sizes stay, so the budget is
still 3 WC : 1 SE samples per problem). It samples a handful of MBPP train problems with the 3-shot
prompt, the sandbox judges every sample against its problem's asserts, the filter keeps the
passing ones, the SE target is finetuned on each model's kept solutions (the cpu trainer, two
steps), and the base and finetuned models are scored by HumanEval pass@1 in the sandbox.

What must hold whatever the model's skill is asserted exactly: samples end at a stop string, at
EOS or at the token limit; every sample's verdict is the sandbox's verdict on its response (no
harness error); the filter keeps exactly the passing, finished samples; pass@1 is the share of
HumanEval problems whose response passes ``check``. The model's skill only decides the numbers,
which the test prints. The MBPP problems are three the model solves greedily (tasks 8, 52 and 62:
of the first 64 MBPP train problems it solved 4 greedily, 8, 52, 58 and 62), sampled at
temperature 0.3: at the experiment's 0.7 it passed none of these 12 samples, and with nothing
kept the train stage stops with "arm 'wc' has no SFT rows (wc: 0 rows)"; should that happen here
the finetune runs on the unfiltered samples (``verifier=none``) instead. HumanEval: its first
problem, its third, and its two shortest (strlen, add).

Torch runs on one thread: on this shared 2-core machine a decoding step of SmolLM2 took 1.05 s
with two threads and 0.11 s with one.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import SHARED_DATA, compose_config, needs_data
from wcse import runner
from wcse.data import prompts
from wcse.records import Problem, Sample, Verdict, read_jsonl
from wcse.roles import ROLES, SAMPLERS
from wcse.settings import validate
from wcse.summary import EvalResult
from wcse.verify import code
from wcse.verify.verifier import verify_samples

pytestmark = needs_data("mbpp/mbpp.jsonl", "humaneval/HumanEval.jsonl")

TRAIN_TASKS = (8, 52, 62)  # MBPP task ids
TEST_TASKS = ("HumanEval/0", "HumanEval/2", "HumanEval/23", "HumanEval/53")
MAX_NEW_TOKENS = 128  # sampling; the kept MBPP solutions were 24-33 tokens
EVAL_MAX_NEW_TOKENS = 96
STEPS = 2
STOPS = prompts.stop_strings("mbpp_3shot")  # ["[DONE]", "\nYou are an expert"]
# What a verdict on a response that holds code can say: the tests ran to a verdict ("ok", pass
# or fail) or the sandbox stopped the code. "error" (no verdict possible) is the harness failing.
SANDBOX = {"ok", "timeout", "memory", "output_limit", "blocked"}


def _pick(source: Path, key: str, ids: tuple[Any, ...], out: Path) -> Path:
    rows = {row[key]: row for row in map(json.loads, source.read_text(encoding="utf-8").splitlines())}
    out.write_text("".join(json.dumps(rows[i]) + "\n" for i in ids), encoding="utf-8")
    return out


def _config(root: Path, model: Path | None, *extra: str):
    """experiment=gemma2_code at CPU size; MBPP validation stays a seeded subset of the shared file."""
    train = _pick(SHARED_DATA / "mbpp" / "mbpp.jsonl", "task_id", TRAIN_TASKS, root / "mbpp_train.jsonl")
    test = _pick(SHARED_DATA / "humaneval" / "HumanEval.jsonl", "task_id", TEST_TASKS, root / "humaneval_test.jsonl")
    models = [] if model is None else [
        override for role in ROLES for override in (f"model_pair.{role}.path={model}", f"model_pair.{role}.name=smollm2-as-{role}")
    ]
    cfg = compose_config(
        root, "experiment=gemma2_code", "setup=w2s", "budget=low", "sampler=hf", "trainer=cpu",
        f"paths.data_dir={SHARED_DATA}", f"dataset.train.path={train}", f"dataset.test.path={test}",
        "dataset.validation.size=1", *models,
        "sampler.device=cpu", "sampler.dtype=float32", "sampler.temperature=0.3",
        f"sampler.max_new_tokens={MAX_NEW_TOKENS}", "sampler.batch_size=16",
        f"evaluator.max_new_tokens={EVAL_MAX_NEW_TOKENS}", "evaluator.batch_size=8", "verifier.workers=2",
        f"trainer.max_steps={STEPS}", "trainer.per_device_batch_size=2", "trainer.max_length=256", "trainer.checkpoints=1",
        *extra,
    )
    validate(cfg)
    return cfg


@pytest.fixture(scope="module")
def arm(tmp_path_factory: pytest.TempPathFactory, smollm2: Path) -> dict[str, Any]:
    """The data stages with the paper's filter, then finetuning and evaluation (one cache)."""
    root = tmp_path_factory.mktemp("code_arm")
    threads = torch.get_num_threads()
    started = time.monotonic()
    try:
        torch.set_num_threads(1)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OMP_NUM_THREADS", "1")  # the training worker's torch
            data_cfg = _config(root, smollm2, "stages=[dataset,sample,verify,metrics]")
            data = runner.run(data_cfg)
            planned = runner.plan(data_cfg).outputs
            kept = {role: len(planned["verify"][role].sft_rows()) for role in SAMPLERS}
            method = "answer" if all(kept.values()) else "none"
            if method == "none":  # nothing passed for some arm: a clear error, then the unfiltered finetune
                with pytest.raises(ValueError, match=r"arm '(wc|se)' has no SFT rows \((wc|se): 0 rows\)"):
                    runner.run(_config(root, smollm2))
            full_cfg = _config(root, smollm2, f"verifier={method}")
            full = runner.run(full_cfg)
            full_planned = runner.plan(full_cfg).outputs
    finally:
        torch.set_num_threads(threads)
    seconds = time.monotonic() - started
    result = {
        "cfg": data_cfg, "data": data, "planned": planned, "method": method, "full": full,
        "full_planned": full_planned, "seconds": seconds,
    }
    _report(result)
    return result


def _report(arm: dict[str, Any]) -> None:
    data, full = arm["data"], arm["full"]
    ft = full.finetune
    print(json.dumps({
        "seconds": round(arm["seconds"], 1),
        "stage_seconds": {stage: round(data.timing_seconds.get(stage, 0) + full.timing_seconds.get(stage, 0), 1) for stage in full.timing_seconds},
        "filter": arm["method"],
        "mbpp": {role: {"samples": f.verified, "passed": f.correct, "kept": f.kept_for_training, "truncated": f.truncated,
                        "coverage": data.data[role].coverage} for role, f in data.filter.models.items()},
        "humaneval_pass@1": {"base 3-shot": ft.base_pass_at_1, "base zero-shot": ft.base_zero_shot_pass_at_1,
                             **{f"SE-LM on {a} data": r.pass_at_1 for a, r in ft.arms.items()}},
        "train_loss": {a: t.train_loss for a, t in full.train.items()},
    }, indent=1))


def _samples_and_verdicts(result: EvalResult) -> tuple[list[Sample], list[Verdict]]:
    folder = Path(result.dir)
    return list(read_jsonl(folder / "samples.jsonl", Sample)), list(read_jsonl(folder / "verdicts.jsonl", Verdict))


def _ends_at_a_stop_or_the_limit(sample: Sample, limit: int) -> None:
    assert sample.params["stop"] == STOPS and sample.params["max_new_tokens"] == limit
    assert not any(stop in sample.text for stop in STOPS)  # the text ends before its stop string
    assert 1 <= sample.generated_tokens <= limit  # counted through the stop string or EOS
    if sample.stop_string is not None:
        assert sample.stop_string in STOPS and sample.finish_reason == "stop"
    elif sample.finish_reason == "length":
        assert sample.generated_tokens == limit
    else:
        assert sample.finish_reason == "stop"  # EOS


def _judged_by_the_sandbox(fmt: str, problems: dict[str, Problem], samples: list[Sample], verdicts: list[Verdict]) -> None:
    """Each verdict is the sandbox's verdict on its sample's response, judged again here."""
    assert [v.key for v in verdicts] == [s.key for s in samples]
    for sample, verdict in zip(samples, verdicts, strict=True):
        assert (verdict.problem_id, verdict.index) == (sample.problem_id, sample.index)
        if verdict.extracted is None:
            assert verdict.status == "no_answer"
        else:
            assert verdict.status in SANDBOX
        assert not verdict.correct or verdict.status == "ok"
        correct, extracted, status = code.check(fmt, sample.response, problems[sample.problem_id])
        assert (correct, status) == (verdict.correct, verdict.status), sample.response
        assert extracted == verdict.extracted


@pytest.mark.slow
def test_mbpp_samples_end_at_the_stop_string_or_the_token_limit(arm) -> None:
    budget, sampled = arm["data"].sampling.budget, arm["data"].sampling.models
    assert (budget.wc_samples, budget.se_samples) == (3, 1)  # 27B / 9B, compute-matched
    reasons: Counter[str] = Counter()
    for role, n in (("wc", 3), ("se", 1)):
        samples = arm["planned"]["sample"].sets[role].load()
        assert len(samples) == sampled[role].samples == n * len(TRAIN_TASKS)
        assert {s.problem_id for s in samples} == {f"mbpp-{t}" for t in TRAIN_TASKS}
        for s in samples:
            _ends_at_a_stop_or_the_limit(s, MAX_NEW_TOKENS)
            assert s.params["temperature"] == 0.3 and s.backend == "hf"
            assert s.response == s.text  # already cut where it stopped
        reasons.update(s.stop_string or s.finish_reason for s in samples)
        assert sampled[role].truncation_rate == sum(s.finish_reason == "length" for s in samples) / len(samples)
    assert reasons["[DONE]"] > 0, reasons  # the model closes its answers as the exemplars do


@pytest.mark.slow
def test_every_sample_is_judged_in_the_sandbox_and_the_filter_keeps_exactly_the_passing_ones(arm) -> None:
    dataset = arm["planned"]["dataset"].main
    problems = dataset.by_id("train")
    assert sorted(problems) == sorted(f"mbpp-{t}" for t in TRAIN_TASKS) and arm["cfg"].dataset.format == "mbpp"
    ran = 0
    for role in SAMPLERS:
        samples = arm["planned"]["sample"].sets[role].load()
        filtered = arm["planned"]["verify"][role]
        verdicts = filtered.verdicts()
        _judged_by_the_sandbox("mbpp", problems, samples, verdicts)
        ran += sum(v.status == "ok" for v in verdicts)
        by_key = {s.key: s for s in samples}
        passing = [(v.problem_id, v.index) for v in verdicts if v.correct and by_key[v.key].finished]
        rows = filtered.sft_rows()
        assert [(r["problem_id"], r["index"]) for r in rows] == passing
        for row in rows:  # the zero-shot prompt and the solution up to its stop string
            sample = next(s for s in samples if (s.problem_id, s.index) == (row["problem_id"], row["index"]))
            assert row["prompt"] == prompts.zero_shot("mbpp_3shot", problems[sample.problem_id])
            assert row["completion"] == " " + sample.response.strip()
        counts = arm["data"].filter.models[role]
        assert (counts.verified, counts.correct, counts.kept_for_training) == (
            len(samples), sum(v.correct for v in verdicts), len(rows)
        )
        assert counts.status == dict(Counter(v.status for v in verdicts)) and "error" not in counts.status
        assert counts.truncated == sum(not s.finished for s in samples)
        solved = {v.problem_id for v in verdicts if v.correct}
        assert arm["data"].data[role].coverage == len(solved) / len(TRAIN_TASKS)
    assert ran > 0  # real outputs reached the tests, not only "no_answer"


@pytest.mark.slow
def test_the_target_is_finetuned_on_each_arms_kept_solutions(arm) -> None:
    full, method = arm["full"], arm["method"]
    assert full.filter.method == method and full.finetune.target == "se" and set(full.train) == {"wc", "se"}
    for role, trained in full.train.items():
        rows = arm["full_planned"]["verify"][role].sft_rows()
        assert trained.data.rows == len(rows) > 0 and trained.data.by_source == {role: len(rows)}
        assert trained.steps == STEPS and math.isfinite(trained.train_loss)
        assert (Path(trained.dir) / "model" / "config.json").is_file()
        selection = full.finetune.arms[role].checkpoint_selection
        assert [c.step for c in selection.checkpoints] == [STEPS]  # scored on the one validation problem
        assert 0 <= selection.checkpoints[0].validation_pass_at_1 <= 1
        assert selection.best.path.startswith(trained.dir)


@pytest.mark.slow
def test_humaneval_pass_at_1_of_base_and_finetuned_models_comes_from_the_sandbox(arm) -> None:
    full = arm["full"]
    problems = arm["full_planned"]["dataset"].main.by_id("test")
    assert sorted(problems) == sorted(TEST_TASKS)
    base = full.models["se"]
    scored = {"base 3-shot": base.base, "base zero-shot": base.base_zero_shot, **{a: r for a, r in full.finetune.arms.items()}}
    ran = 0
    for name, result in scored.items():
        samples, verdicts = _samples_and_verdicts(result)
        assert sorted(s.problem_id for s in samples) == sorted(TEST_TASKS), name
        assert (result.n, result.n_problems) == (len(TEST_TASKS), len(TEST_TASKS))
        assert result.pass_at_1 == sum(v.correct for v in verdicts) / len(TEST_TASKS)
        assert result.status == dict(Counter(v.status for v in verdicts)) and "error" not in result.status, name
        for s in samples:
            _ends_at_a_stop_or_the_limit(s, EVAL_MAX_NEW_TOKENS)
            render = prompts.few_shot if name == "base 3-shot" else prompts.zero_shot  # zero-shot: as trained
            assert s.prompt == render("mbpp_3shot", problems[s.problem_id]) and s.params["temperature"] == 0.0
        _judged_by_the_sandbox("mbpp", problems, samples, verdicts)
        ran += sum(v.status == "ok" for v in verdicts)
    assert full.finetune.base_pass_at_1 == base.base.pass_at_1
    assert full.finetune.wc_minus_se_pass_at_1 == full.finetune.arms["wc"].pass_at_1 - full.finetune.arms["se"].pass_at_1
    assert ran > 0  # some responses ran against HumanEval's check(), whatever they scored


def test_the_code_arm_grades_humaneval_by_its_own_tests(tmp_path: Path) -> None:
    """The evaluator grades the test split in the dataset's format, "mbpp"; HumanEval's reference
    solutions still pass there, as a completion or as the whole function (were HumanEval judged as
    MBPP, every verdict would be "error" and pass@1 0 whatever the model), and a wrong one fails."""
    cfg = _config(tmp_path, None, "stages=[dataset]")
    problems = runner.plan(cfg).outputs["dataset"].main.by_id("test")
    responses = [
        (pid, p.solution) for pid, p in problems.items()
    ] + [(pid, "[BEGIN]\n" + p.question + p.solution) for pid, p in problems.items()] + [(TEST_TASKS[-1], "    return x - y\n")]
    samples = [
        Sample(key=f"k{i}", model="reference", dataset="humaneval", problem_id=pid, index=i, seed=0, params={"stop": STOPS},
               prompt="", text=text, prompt_tokens=0, generated_tokens=1, finish_reason="stop", backend="reference", seconds=0.0)
        for i, (pid, text) in enumerate(responses)
    ]
    verdicts = verify_samples(cfg.dataset.format, problems, samples, "lenient", workers=2)
    assert [(v.correct, v.status) for v in verdicts] == [(True, "ok")] * 2 * len(TEST_TASKS) + [(False, "ok")]
