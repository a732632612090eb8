"""The real-data path of the pipeline (MATH), on a store of samples made from reference solutions.

No model can sample MATH here, so the test writes the samples the Gemma2 pair would have made
into the pipeline's own stores (same requests, keys and layout), then runs the verify and
metrics stages on them exactly as after a GPU sampling job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tests.conftest import SHARED_DATA, compose_config
from wcse import runner
from wcse.artifacts import MissingArtifact
from wcse.metrics import ProblemMetrics
from wcse.records import Problem, StepJudgement, read_jsonl
from wcse.sampling.store import SampleStore
from wcse.settings import validate

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "math").is_dir(), reason=f"no MATH data in {SHARED_DATA}")

WRONG = "-98765"


def _response(problem: Problem, index: int) -> str:
    """Sample j of a problem: the reference solution, a wrong final answer, a bare stated answer."""
    if index % 3 == 0:
        return problem.solution
    if index % 3 == 1:
        return problem.solution.replace(f"\\boxed{{{problem.answer}}}", f"\\boxed{{{WRONG}}}")
    return f"The final answer is ${problem.answer}$."


def _fill_stores(cfg: DictConfig, truncated: Callable[[int], bool] = lambda index: False) -> runner.Plan:
    """The planned sample stores, filled with reference-made samples (no model runs); samples
    whose index ``truncated`` picks are recorded as cut by max_new_tokens."""
    planned = runner.plan(cfg, check_cache=False)
    problems = planned.outputs["dataset"].main.by_id("train")
    for samples in planned.outputs["sample"].sets.values():
        samples.store.append(
            [
                r.to_sample(
                    text=_response(problems[r.problem_id], r.index), prompt_tokens=len(r.prompt.split()),
                    generated_tokens=100, finish_reason="length" if truncated(r.index) else "stop",
                    backend="reference", seconds=0.0,
                )
                for r in samples.requests
            ]
        )
    return planned


def test_verify_and_metrics_on_math_reference_samples(tmp_path: Path) -> None:
    overrides = [
        "model_pair=gemma2", "dataset=math", f"paths.data_dir={SHARED_DATA}", "dataset.max_train=30",
        "budget=low", "stages=[verify,metrics]", "verifier.workers=2",
    ]
    cfg = compose_config(tmp_path, *overrides)
    with pytest.raises(MissingArtifact, match="stage 'sample' is not in `stages`"):
        runner.run(cfg)  # nothing sampled yet: a clear error, not an empty result

    planned = _fill_stores(cfg)
    summary = runner.run(cfg)

    train = planned.outputs["dataset"].main.splits["train"]
    assert len(train) == 30 and all(p.answer for p in train)
    # budget=low: SE 1 sample (the reference), WC 27/9 = 3 (reference, wrong answer, bare answer)
    filt, data = summary.filter.models, summary.data
    # one reference solution shares a 13-gram with a MATH-500 question: decontamination drops it
    # from every set it is kept in (SE's reference, WC's copy of it)
    assert filt["se"].model_dump(exclude_none=True) == {
        "verified": 30, "correct": 30, "truncated": 0, "kept_truncated": False, "kept_for_training": 29, "status": {"ok": 30},
        "decontaminated": 1,
    }
    assert filt["wc"].verified == 90 and filt["wc"].correct == 60 and (filt["wc"].decontaminated, filt["wc"].kept_for_training) == (1, 59)
    assert data["se"].coverage == 1.0 and data["wc"].coverage == 1.0
    assert data["wc"].accuracy == pytest.approx(2 / 3)
    # two distinct correct solutions per problem for WC, one for SE, by either uniqueness rule
    assert data["wc"].diversity_by_rule["exact"] == pytest.approx(2.0)
    assert data["se"].diversity == pytest.approx(1.0)
    levels = {str(p.level) for p in train}
    assert set(data["wc"].per_level) == levels
    assert sum(g.n_problems for g in data["wc"].per_subject.values()) == 30
    assert data["wc"].fpr.n == 0  # no judge configured: the reasoning was not checked

    table = list(read_jsonl(Path(data["wc"].per_problem_table), ProblemMetrics))
    assert [row.n_correct for row in table] == [2] * 30
    sft = planned.outputs["verify"]["wc"].sft_rows()
    assert all(WRONG not in row["completion"] for row in sft)


def test_no_verification_arm_keeps_every_sample(tmp_path: Path) -> None:
    cfg = compose_config(
        tmp_path, "model_pair=gemma2", "dataset=math", f"paths.data_dir={SHARED_DATA}", "dataset.max_train=10",
        "budget=low", "stages=[verify]", "verifier=none", "verifier.workers=1",
    )
    _fill_stores(cfg)
    filt = runner.run(cfg).filter
    assert filt.method == "none"
    assert filt.models["wc"].kept_for_training == 30 and filt.models["wc"].correct == 20


@pytest.mark.parametrize("keep", [False, True])
def test_truncated_samples_are_counted_and_dropped_unless_kept(tmp_path: Path, keep: bool) -> None:
    cfg = compose_config(
        tmp_path, "model_pair=gemma2", "dataset=math", f"paths.data_dir={SHARED_DATA}", "dataset.max_train=10",
        "budget=low", "stages=[verify]", "verifier.workers=1", f"verifier.keep_truncated={keep}",
    )
    _fill_stores(cfg, truncated=lambda index: index == 0)  # every reference solution was cut short
    wc = runner.run(cfg).filter.models["wc"]
    assert (wc.verified, wc.truncated, wc.correct) == (30, 10, 20)
    # the correct ones are sample 0 (the reference) and sample 2 (the bare answer) of each problem
    assert wc.kept_for_training == (20 if keep else 10) and wc.kept_truncated is keep


def _judged_cfg(tmp_path: Path, judge_path: str, *overrides: str):
    return compose_config(
        tmp_path, "model_pair=gemma2", "dataset=math", f"paths.data_dir={SHARED_DATA}", "budget=low",
        "verifier.workers=2", f"verifier.judge.path={judge_path}", "verifier.judge.name=test-judge",
        "verifier.judge.sampler.backend=hf", "verifier.judge.sampler.device=cpu", "verifier.judge.sampler.dtype=float32",
        *overrides,
    )


def test_a_steps_judge_gives_the_fpr_and_is_asked_only_once(tmp_path: Path) -> None:
    """The toy SE model as a (hopeless) judge: the pipeline's judge plumbing, not its verdicts."""
    cfg = _judged_cfg(
        tmp_path, "toy:se", "verifier=answer_fpr", "verifier.judge.chat=false", "verifier.judge.max_samples=5",
        "verifier.judge.sampler.max_new_tokens=4", "dataset.max_train=6", "stages=[verify,metrics]",
    )
    validate(cfg)
    _fill_stores(cfg)
    data = runner.run(cfg).data
    stores = list((tmp_path / "cache" / "judgements").iterdir())
    assert len(stores) == 1
    assert len(SampleStore(stores[0]).keys()) == 10  # 5 correct samples per arm, of 6 (SE) and 12 (WC)
    # the toy model writes no verdict line: every reply is unparsable, so no FPR evidence
    assert data["wc"].fpr.n == 0 == data["se"].fpr.n
    for role in ("wc", "se"):  # the judge's verdicts, by sample key, for the label export: none parsed
        table = Path(data[role].steps_judged_table)
        assert table == tmp_path / "run" / "metrics" / f"{role}.steps_judged.jsonl" and table.read_text() == ""
    shards = sorted(SampleStore(stores[0]).shards())
    runner.run(cfg)
    assert sorted(SampleStore(stores[0]).shards()) == shards  # judged once, reused after


def test_the_judge_prompt_must_fit_the_method(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'steps' prompt; verifier.method=judge needs a 'answer' prompt"):
        validate(_judged_cfg(tmp_path, "toy:se", "verifier=judge", "verifier.judge.prompt=steps"))
    with pytest.raises(ValueError, match="label-free verification needs verifier.judge"):
        validate(compose_config(tmp_path, "verifier.method=judge"))


@pytest.mark.slow
def test_smollm2_as_label_free_judge_and_as_fpr_judge(tmp_path: Path, smollm2: Path) -> None:
    """A real instruct model through its chat template, in both judge roles, on MATH."""
    common = ["dataset.max_train=3", "verifier.judge.sampler.batch_size=8"]
    cfg = _judged_cfg(tmp_path, str(smollm2), "verifier=judge", "verifier.judge.sampler.max_new_tokens=24", "stages=[verify]", *common)
    validate(cfg)
    planned = _fill_stores(cfg)
    filt = runner.run(cfg).filter.models
    for role, n in (("wc", 9), ("se", 3)):
        filtered = planned.outputs["verify"][role]
        judged = filtered.judged()
        assert len(judged) == n and {v.status for v in judged} <= {"judged", "unparsable"}
        assert filt[role].kept_for_training == sum(v.correct for v in judged)
        truth = {v.key: v.correct for v in filtered.verdicts()}
        assert filt[role].judge.model_dump() == {
            "kept_wrong": sum(v.correct and not truth[v.key] for v in judged),
            "dropped_right": sum(truth[v.key] and not v.correct for v in judged),
        }
    print({role: filt[role] for role in ("wc", "se")})

    cfg = _judged_cfg(
        tmp_path, str(smollm2), "verifier=answer_fpr", "verifier.judge.sampler.max_new_tokens=64",
        "verifier.judge.max_samples=3", "stages=[verify,metrics]", *common,
    )
    data = runner.run(cfg).data
    for role in ("wc", "se"):
        assert data[role].fpr.n <= 3
        judged = list(read_jsonl(Path(data[role].steps_judged_table), StepJudgement))
        assert len(judged) == data[role].fpr.n and sum(not j.steps_correct for j in judged) == round((data[role].fpr.value or 0) * len(judged))
    print({role: data[role].fpr for role in ("wc", "se")})
