"""Versioned few-shot prompts as files: they load, render their exemplars, copy the training data
exactly, never show a problem itself, and their version reaches every sample's key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig

from tests.conftest import CONF, SHARED_DATA
from wcse.data import prompts
from wcse.data.sources import FORMATS
from wcse.pipeline import Pipeline
from wcse.records import Problem
from wcse.sampling.store import sample_key
from wcse.toy.tokenizer import prompt as toy_prompt

needs_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"benchmark files not found in {SHARED_DATA}"
)

# Where each few-shot prompt's exemplars come from: (row format, file under the data dir).
SOURCES = {
    "math_4shot": ("math", "math/train.jsonl"),
    "gsm8k_8shot": ("gsm8k", "gsm8k/train.jsonl"),
    "mbpp_3shot": ("mbpp", "mbpp/mbpp.jsonl"),
}
# version -> digest of what renders prompts (templates and exemplars). A prompt edited without
# a new version would silently mix old and new samples under one key: bump the version and add
# its digest here.
RENDERED = {
    "math-v2": "f557a462640c28e2",
    "gsm8k-v2": "c4ab509bb478248f",
    "mbpp-v2": "4f6187a81d983fbc",
    "humaneval-v1": "d09266fe9376c056",
    "toy-v1": "c6197d48a1696a11",
}
FOREIGN = Problem(id="not-an-exemplar", question="What is {x} + 1?", answer="2")


def rendered_digest(p: prompts.Prompt) -> str:
    content = [p.question, p.answer, [dataclasses.asdict(e) for e in p.exemplars]]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def shot_blocks(prompt_id: str, shots: list[Problem]) -> list[str]:
    t = prompts.template(prompt_id)
    return [
        prompts.zero_shot(prompt_id, s) + t.answer.format(solution=s.solution.strip(), answer=s.answer)
        for s in shots
    ]


def test_every_prompt_file_loads_and_validates() -> None:
    assert prompts.known() == ["gsm8k_8shot", "humaneval", "math_4shot", "mbpp_3shot", "toy"]
    for prompt_id in prompts.known():
        p = prompts.template(prompt_id)
        raw = yaml.safe_load((prompts.PROMPTS_DIR / f"{prompt_id}.yaml").read_text(encoding="utf-8"))
        assert tuple(raw) == prompts.KEYS and p.id == prompt_id
        assert p.shots == len(p.exemplars) == len(raw["exemplars"])
        assert RENDERED[p.version] == rendered_digest(p), f"{prompt_id}: prompt changed: bump its version"
    assert {(p := prompts.template(i)).version: p.shots for i in ("math_4shot", "gsm8k_8shot")} == {
        "math-v2": 4,
        "gsm8k-v2": 8,
    }


def test_every_dataset_config_names_a_prompt_file() -> None:
    for path in sorted((CONF / "dataset").glob("*.yaml")):
        prompt_id = yaml.safe_load(path.read_text()).get("prompt")
        if prompt_id is not None:
            assert prompt_id in prompts.known(), path.name
    with pytest.raises(ValueError, match="unknown prompt"):
        prompts.template("math_5shot")


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda r: r.pop("source"), r"missing keys \['source'\]"),
        (lambda r: r.update(extra=1), r"unknown keys \['extra'\]"),
        (lambda r: r.update(shots=3), "'shots' is 3"),
        (lambda r: r["exemplars"][0].pop("solution"), r"exemplar 0: missing keys \['solution'\]"),
        (lambda r: r["exemplars"][1].update(id=r["exemplars"][0]["id"]), "ids repeat"),
        (lambda r: r.update(answer=" {solution} {final}"), "bad template"),
        (lambda r: r.update(question="Q:"), "must contain {question}"),
    ],
)
def test_a_bad_prompt_file_is_rejected_by_name(
    tmp_path: Path, edit: Callable[[dict], object], error: str
) -> None:
    raw = yaml.safe_load((prompts.PROMPTS_DIR / "math_4shot.yaml").read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "math_4shot.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ValueError, match=error) as err:
        prompts.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("prompt_id", ["math_4shot", "gsm8k_8shot", "mbpp_3shot", "humaneval", "toy"])
def test_few_shot_renders_every_exemplar_in_order_then_the_problem(prompt_id: str) -> None:
    p = prompts.template(prompt_id)
    text = prompts.few_shot(prompt_id, FOREIGN)
    assert text == "\n\n".join(
        [*shot_blocks(prompt_id, list(p.exemplars)), prompts.zero_shot(prompt_id, FOREIGN)]
    )
    assert prompts.exemplars(prompt_id, FOREIGN) == list(p.exemplars)


def test_math_renders_4_exemplars_and_gsm8k_8() -> None:
    math = prompts.few_shot("math_4shot", FOREIGN)
    assert math.count("Final Answer: The final answer is") == 4 and math.count("Problem:\n") == 5
    gsm8k = prompts.few_shot("gsm8k_8shot", FOREIGN)
    assert gsm8k.count("\n#### ") == 8 and gsm8k.count("Question: ") == 9


def test_toy_prompt_is_the_toy_tokenizers() -> None:
    assert (
        prompts.zero_shot("toy", FOREIGN) == prompts.few_shot("toy", FOREIGN) == toy_prompt(FOREIGN.question)
    )


@needs_data
@pytest.mark.parametrize("prompt_id", sorted(SOURCES))
def test_exemplars_are_training_rows_copied_byte_for_byte(prompt_id: str) -> None:
    """Each exemplar is the Problem the loader makes of its row: same id, same text."""
    fmt, relative = SOURCES[prompt_id]
    lines = (SHARED_DATA / relative).read_text(encoding="utf-8").splitlines()
    loaded = {p.id: p for p in (FORMATS[fmt](json.loads(line), "train", i) for i, line in enumerate(lines))}
    for e in prompts.template(prompt_id).exemplars:
        assert e.id in loaded, f"{prompt_id}: exemplar {e.id} is not in {relative}"
        row = loaded[e.id]
        assert (e.question, e.solution, e.answer) == (row.question, row.solution, row.answer), e.id
    if prompt_id == "mbpp_3shot":  # the MBPP paper's prompt tasks, from its prompt split (tasks 1-10)
        assert [e.id for e in prompts.template(prompt_id).exemplars] == ["mbpp-2", "mbpp-3", "mbpp-4"]


@pytest.mark.parametrize("prompt_id", sorted(SOURCES))
def test_a_problem_that_is_an_exemplar_never_sees_itself(prompt_id: str) -> None:
    """Dropped, not replaced: the exemplar itself is asked with one shot fewer."""
    shots = list(prompts.template(prompt_id).exemplars)
    for e in shots:
        others = [s for s in shots if s is not e]
        # the same problem under another id (a dataset read in another row order) is caught too
        for asked in (
            e,
            dataclasses.replace(e, id="renamed"),
            dataclasses.replace(e, solution="", answer=""),
        ):
            text = prompts.few_shot(prompt_id, asked)
            assert text == "\n\n".join([*shot_blocks(prompt_id, others), prompts.zero_shot(prompt_id, asked)])
            assert text.count(e.question) == 1


@pytest.mark.parametrize("dataset", [p.stem for p in sorted((CONF / "dataset").glob("*.yaml"))])
def test_the_prompt_version_is_a_sampling_param(compose_cfg: Callable[..., DictConfig], dataset: str) -> None:
    """The pipeline's sampling params (hashed into every key, stored in every record) carry the version."""
    cfg = compose_cfg(f"dataset={dataset}")
    params = Pipeline(cfg).sampling_params
    assert params["prompt"] == prompts.template(cfg.dataset.prompt).version
    bumped = {**params, "prompt": params["prompt"] + "-next"}
    assert sample_key("m", "d", "p", 0, params, 1) != sample_key("m", "d", "p", 0, bumped, 1)


def test_every_toy_request_carries_the_version_in_its_params_and_key(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    pipeline = Pipeline(compose_cfg("dataset.toy.n_train=4"))
    requests = pipeline.requests("se")
    assert requests and {r.params["prompt"] for r in requests} == {"toy-v1"}
    for r in requests:
        assert r.key == sample_key(
            r.model, r.dataset, r.problem_id, r.index, {**r.params, "prompt": "toy-v1"}, r.seed
        )
        assert r.prompt == prompts.few_shot(
            "toy", next(p for p in pipeline.problems["train"] if p.id == r.problem_id)
        )
