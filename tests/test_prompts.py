"""Versioned few-shot prompts as files: they load, render their exemplars, copy the training data
exactly, never show a problem itself, declare stop strings that end every exemplar and cut none,
render as chat messages, and their version reaches every sample's key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import DictConfig

from tests.conftest import CONF, SHARED_DATA
from wcse.artifacts import Cache
from wcse.data import prompts
from wcse.data.sources import FORMATS
from wcse.records import Problem, cut_at_stop
from wcse.runner import ALWAYS_BUILT, needed
from wcse.sampling.store import SampleRequest, sample_key
from wcse.stages import graph
from wcse.stages.base import RunContext
from wcse.stages.sample import sampling_params
from wcse.toy import world
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
# version -> digest of what renders prompts and ends their samples (templates, stop strings, chat
# mode, exemplars). A prompt edited without a new version would silently mix old and new samples
# under one key: bump the version and add its digest here. (v3 / humaneval-v2 added stop strings;
# toy-v2 is the 3-shot prompt of the document-pretrained toy ladder, with its stop strings.)
RENDERED = {
    "math-v3": "30089ffbe72eda02",
    "gsm8k-v3": "a15dff3900f6fa33",
    "mbpp-v3": "a27582957627fffa",
    "humaneval-v2": "1408aad21b250a25",
    "toy-v2": "71be474d601d91c5",
    "instruction-v1": "b8c35408c6d089df",
}
FOREIGN = Problem(id="not-an-exemplar", question="What is {x} + 1?", answer="2")


def rendered_digest(p: prompts.Prompt) -> str:
    content = [p.question, p.answer, list(p.stop), p.chat, [dataclasses.asdict(e) for e in p.exemplars]]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def shot_blocks(prompt_id: str, shots: list[Problem]) -> list[str]:
    t = prompts.template(prompt_id)
    return [
        prompts.zero_shot(prompt_id, s) + t.answer.format(solution=s.solution.strip(), answer=s.answer)
        for s in shots
    ]


def test_every_prompt_file_loads_and_validates() -> None:
    assert prompts.known() == ["gsm8k_8shot", "humaneval", "instruction", "math_4shot", "mbpp_3shot", "toy"]
    for prompt_id in prompts.known():
        p = prompts.template(prompt_id)
        raw = yaml.safe_load((prompts.PROMPTS_DIR / f"{prompt_id}.yaml").read_text(encoding="utf-8"))
        assert tuple(raw) == prompts.KEYS and p.id == prompt_id
        assert p.shots == len(p.exemplars) == len(raw["exemplars"])
        assert RENDERED[p.version] == rendered_digest(p), f"{prompt_id}: prompt changed: bump its version"
    assert {(p := prompts.template(i)).version: p.shots for i in ("math_4shot", "gsm8k_8shot")} == {
        "math-v3": 4,
        "gsm8k-v3": 8,
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
        (lambda r: r.update(stop="\nProblem:"), "'stop' must be a list"),
        (lambda r: r.update(stop=["\nProblem:", ""]), "'stop' must be a list"),
        (lambda r: r.update(stop=["\nProblem:", "\nProblem:"]), "'stop' must be a list"),
        (lambda r: r.update(stop=["\nProblem:", "Problem:"]), "contains 'Problem:'"),
        # "\n\n" occurs inside exemplar train/algebra/1951's solution
        (lambda r: r.update(stop=["\n\n"]), "cuts into exemplar train/algebra/1951.json's answer"),
        (lambda r: r.update(stop=["Final Answer:"]), "cuts into exemplar train/algebra/943.json's answer"),
        (lambda r: r.update(stop=[]), "no stop string occurs where one exemplar's answer ends"),
        (lambda r: r.update(stop=["\nQuestion:"]), "no stop string occurs"),
        (lambda r: r.update(chat="turns"), "'chat' is 'turns'; must be one of"),
        (lambda r: r.pop("chat"), r"missing keys \['chat'\]"),
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


def test_toy_prompt_is_the_toy_tokenizers_and_shows_train_problems_in_the_graded_style() -> None:
    assert prompts.zero_shot("toy", FOREIGN) == toy_prompt(FOREIGN.question)
    text = prompts.few_shot("toy", FOREIGN)
    assert text.endswith("\n\n" + toy_prompt(FOREIGN.question)) and text.count("Question :") == 4
    train = {p.question: p for p in world.generate("train", 400, 0)}
    for shot in prompts.template("toy").exemplars:
        assert shot.question in train and shot.solution == train[shot.question].solution
        assert world.check_solution(shot.solution, train[shot.question].meta, shot.answer).steps_correct


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


def planned(cfg: DictConfig, name: str) -> dict[str, Any]:
    """The planned outputs (requests, store addresses) of stage ``name`` and of the stages it
    needs, by stage, as the runner plans them before building anything."""
    selected = frozenset({name})
    ctx = RunContext(cfg, Cache(cfg.paths.cache_dir, allowed={*selected, *ALWAYS_BUILT}), Path(cfg.paths.run_dir), selected)
    outputs: dict[str, Any] = {}
    for stage in needed(graph(), selected):
        outputs[stage.name] = stage.plan(ctx, {need: outputs[need] for need in stage.needs})
    return outputs


@pytest.mark.parametrize("dataset", [p.stem for p in sorted((CONF / "dataset").glob("*.yaml"))])
def test_the_prompt_version_and_stop_strings_are_sampling_params(
    compose_cfg: Callable[..., DictConfig], dataset: str
) -> None:
    """The sampling params (hashed into every key, stored in every record) carry the version, and
    the stop strings when the prompt has some."""
    cfg = compose_cfg(f"dataset={dataset}")
    params = sampling_params(cfg, cfg.dataset.prompt, "wc")
    assert params["prompt"] == prompts.template(cfg.dataset.prompt).version
    assert params.get("stop") == (prompts.stop_strings(cfg.dataset.prompt) or None)
    bumped = {**params, "prompt": params["prompt"] + "-next"}
    assert sample_key("m", "d", "p", 0, params, 1) != sample_key("m", "d", "p", 0, bumped, 1)


def test_every_toy_request_carries_the_version_in_its_params_and_key(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    outputs = planned(compose_cfg("dataset.toy.n_train=4"), "sample")
    requests = outputs["sample"].sets["se"].requests
    problems = {p.id: p for p in outputs["dataset"].main.splits["train"]}
    assert requests and {r.params["prompt"] for r in requests} == {"toy-v2"}
    for r in requests:
        assert r.params["stop"] == ["Question", "Problem", "Q :"]
        assert r.key == sample_key(r.model, r.dataset, r.problem_id, r.index, r.params, r.seed)
        assert r.prompt == prompts.few_shot("toy", problems[r.problem_id])


def test_stop_strings_end_every_exemplar_and_are_params_only_when_declared() -> None:
    """In the rendered few-shot text, each exemplar after the first begins with a stop string, and
    cutting there leaves the whole of the previous exemplar's answer."""
    for prompt_id in ("math_4shot", "gsm8k_8shot", "mbpp_3shot"):
        text, stops = prompts.few_shot(prompt_id, FOREIGN), prompts.stop_strings(prompt_id)
        shots = list(prompts.template(prompt_id).exemplars)
        blocks = shot_blocks(prompt_id, shots)
        for shot, block, following in zip(shots, blocks, blocks[1:], strict=False):
            joined = block + "\n\n" + following
            assert joined in text
            kept, stop = cut_at_stop(joined, stops)
            assert stop is not None and shot.solution.strip() in kept and len(kept) <= len(block + "\n\n")
        assert prompts.stop_params(prompt_id) == {"stop": stops}
    assert prompts.stop_strings("math_4shot") == ["\nProblem:"]
    assert prompts.stop_strings("gsm8k_8shot") == ["\nQuestion:"]
    assert prompts.stop_strings("mbpp_3shot")[0] == "[DONE]"
    assert prompts.stop_params("toy") == {"stop": ["Question", "Problem", "Q :"]}  # the corpus's headers


@needs_data
@pytest.mark.parametrize(
    ("prompt_id", "fmt", "relative"),
    [
        ("math_4shot", "math", "math/train.jsonl"),
        ("math_4shot", "math", "math500/test.jsonl"),
        ("gsm8k_8shot", "gsm8k", "gsm8k/train.jsonl"),
        ("mbpp_3shot", "mbpp", "mbpp/mbpp.jsonl"),
        ("humaneval", "humaneval", "humaneval/HumanEval.jsonl"),
    ],
)
def test_no_reference_solution_holds_its_prompts_stop_strings(prompt_id: str, fmt: str, relative: str) -> None:
    """A stop string that occurs in right solutions would cut right samples (none of these 16,611 does)."""
    lines = (SHARED_DATA / relative).read_text(encoding="utf-8").splitlines()
    stops = prompts.stop_strings(prompt_id)
    cut = [p.id for p in (FORMATS[fmt](json.loads(line), "train", i) for i, line in enumerate(lines))
           if cut_at_stop(p.solution, stops)[1] is not None]
    assert cut == []


@pytest.mark.parametrize("prompt_id", ["math_4shot", "gsm8k_8shot", "mbpp_3shot", "humaneval", "toy"])
def test_messages_render_the_prompt_as_chat_turns(prompt_id: str) -> None:
    t = prompts.template(prompt_id)
    zero = prompts.messages(prompt_id, FOREIGN, few_shot=False)
    assert zero == [{"role": "user", "content": prompts.zero_shot(prompt_id, FOREIGN).strip()}]
    turns = prompts.messages(prompt_id, FOREIGN, few_shot=True, system="Be brief.")
    assert turns[0] == {"role": "system", "content": "Be brief."}
    if t.chat == "one_message":
        assert turns[1:] == [{"role": "user", "content": prompts.few_shot(prompt_id, FOREIGN).strip()}]
    else:
        assert [m["role"] for m in turns[1:]] == ["user", "assistant"] * t.shots + ["user"]
        for shot, question, answer in zip(t.exemplars, turns[1:-1:2], turns[2::2], strict=True):
            assert question["content"] == prompts.zero_shot(prompt_id, shot).strip()
            assert answer["content"] == t.answer.format(solution=shot.solution.strip(), answer=shot.answer).strip()
        assert turns[-1] == zero[0]
    assert all(set(m) == {"role", "content"} and m["content"] for m in turns)


def test_multi_turn_messages_never_show_the_problem_itself() -> None:
    shot = prompts.template("gsm8k_8shot").exemplars[2]
    turns = prompts.messages("gsm8k_8shot", shot, few_shot=True)
    assert len(turns) == 2 * 7 + 1 and sum(shot.question in m["content"] for m in turns) == 1
    assert {prompts.template(i).chat for i in ("math_4shot", "gsm8k_8shot", "mbpp_3shot")} == {"multi_turn"}


def test_a_request_carries_messages_outside_its_key() -> None:
    params = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8, **prompts.stop_params("math_4shot")}
    turns = prompts.messages("math_4shot", FOREIGN, few_shot=True)
    common = dict(model="m", dataset="d", problem_id="p", index=0, prompt=prompts.few_shot("math_4shot", FOREIGN),
                  params=params, base_seed=0)
    chat, plain = SampleRequest.create(**common, messages=turns), SampleRequest.create(**common)
    assert chat.key == plain.key and plain.messages is None
    assert chat.messages == tuple(turns) and chat.params["stop"] == ["\nProblem:"]
