"""The LLM judge: versioned prompt files, verdict parsing, keyed and resumable judgements, verdicts
for FPR and the label-free arm, and one real instruct model (SmolLM2-135M) judging GSM8K samples."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig
from transformers import AutoTokenizer

from tests.conftest import SHARED_DATA
from tests.test_store import Spy
from wcse.data.sources import FORMATS
from wcse.records import Problem, Sample, Verdict
from wcse.sampling.backends import open_sampler
from wcse.sampling.hf import HFSampler
from wcse.sampling.openai_backend import api_params, chat_messages
from wcse.sampling.store import SampleRequest, SampleStore, sample_key
from wcse.toy.ladder import SHIPPED
from wcse.verify import judge
from wcse.verify.judge import ChatTemplate, Judgement, parse_judgement
from wcse.verify.verifier import verify_samples

# version -> digest of what renders the prompt (kind and template). A prompt edited without a new
# version would silently reuse judgements made with the old one: bump the version, add its digest.
RENDERED = {"judge-steps-v1": "a343dca52fc82b9c", "judge-answer-v1": "7e160c9fc466c723"}
PARAMS = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 512}
MADELINE = Problem(
    id="gsm8k-train-2566",
    question="Madeline has $48 and her brother has half as much. How much do they have together?",
    answer="72",
)
SOLUTION = " Her brother has $48/2 = $24.\n\n  Together they have $48 + $24 = $72.\n#### 72\n"


def make_sample(problem: Problem, text: str, *, model: str = "wc", index: int = 0) -> Sample:
    """A judged sample as the store holds it (how it was generated does not matter to the judge)."""
    request = SampleRequest.create(
        model=model, dataset="gsm8k", problem_id=problem.id, index=index, prompt="", params={}, base_seed=0
    )
    return request.to_sample(
        text=text, prompt_tokens=0, generated_tokens=0, finish_reason="stop", backend="test", seconds=0.0
    )


# ------------------------------------------------------------------ prompt files


def test_every_judge_prompt_file_loads_and_validates() -> None:
    assert judge.known() == ["answer", "steps"]
    for prompt_id in judge.known():
        t = judge.template(prompt_id)
        raw = yaml.safe_load((judge.PROMPTS_DIR / f"{prompt_id}.yaml").read_text(encoding="utf-8"))
        assert tuple(raw) == judge.KEYS and t.id == prompt_id and t.kind in judge.KINDS
        digest = hashlib.sha256(json.dumps([t.kind, t.template]).encode()).hexdigest()[:16]
        assert RENDERED[t.version] == digest, f"{prompt_id}: prompt changed: bump its version"
        assert "\nVerdict: correct\n" in t.template and "\nVerdict: incorrect\n" in t.template
    assert judge.template("steps").fields == {"question", "reference", "steps"}
    assert judge.template("answer").fields == {"question", "solution"}  # never the ground truth
    with pytest.raises(ValueError, match="unknown; known"):
        judge.template("vibes")


@pytest.mark.parametrize(
    ("prompt_id", "edit", "error"),
    [
        ("steps", lambda r: r.pop("kind"), r"missing keys \['kind'\]"),
        ("steps", lambda r: r.update(extra=1), r"unknown keys \['extra'\]"),
        ("steps", lambda r: r.update(description=""), "'description' must be a non-empty string"),
        ("steps", lambda r: r.update(kind="vibes"), "'kind' is 'vibes'"),
        ("steps", lambda r: r.update(template=r["template"] + " {"), "'template': bad template"),
        ("steps", lambda r: r.update(template=r["template"] + " }"), "'template': bad template"),
        ("steps", lambda r: r.update(template=r["template"] + " {answer}"), "'template': bad template"),
        (
            "steps",
            lambda r: r.update(template="{question} {reference}"),
            "must show {question} and the solution",
        ),
        (
            "answer",
            lambda r: r.update(template=r["template"] + "{reference}"),
            r"bad template \(KeyError\('reference",
        ),
        ("answer", lambda r: r.update(template="Solution: {solution}"), "must show {question}"),
    ],
)
def test_a_bad_judge_prompt_file_is_rejected_by_name(
    tmp_path: Path, prompt_id: str, edit: Callable[[dict], object], error: str
) -> None:
    raw = yaml.safe_load((judge.PROMPTS_DIR / f"{prompt_id}.yaml").read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / f"{prompt_id}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ValueError, match=error) as err:
        judge.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("text", "error"), [("- a\n- b\n", "not a mapping"), ("version: [\n", "invalid YAML")]
)
def test_a_judge_prompt_file_that_is_no_mapping_is_rejected_by_name(
    tmp_path: Path, text: str, error: str
) -> None:
    path = tmp_path / "steps.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=error) as err:
        judge.load(path)
    assert str(path) in str(err.value)


def test_the_steps_prompt_renders_exactly() -> None:
    """The whole text a judge reads: numbered non-empty lines, the reference answer, the format."""
    assert judge.render("steps", MADELINE, make_sample(MADELINE, SOLUTION)) == (
        "You are a careful math teacher grading a student's solution. The reference final answer is given, "
        "but a solution can reach the right final answer through wrong reasoning: your job is to decide "
        "whether every step of the reasoning is correct.\n"
        "\n"
        "## Problem\n"
        "Madeline has $48 and her brother has half as much. How much do they have together?\n"
        "\n"
        "## Reference final answer\n"
        "72\n"
        "\n"
        "## Student solution, one step per line\n"
        "Step 1: Her brother has $48/2 = $24.\n"
        "Step 2: Together they have $48 + $24 = $72.\n"
        "Step 3: #### 72\n"
        "\n"
        "## How to grade\n"
        'Go through the steps in order. For each step, write one short line: the step number, then "correct" '
        'or "wrong" with the reason. Check that:\n'
        "- every calculation is right (recompute it; annotations like <<48/2=24>> are calculator notes and "
        "must be right too);\n"
        "- every quantity is taken correctly from the problem or from an earlier step;\n"
        "- the step follows logically and answers what the problem actually asks.\n"
        "A step is wrong if it contains an error, even when later steps or the final answer happen to be "
        "right. Rounding, notation, style and terse or missing explanations are not errors by themselves. "
        "A step that only states the final answer is correct if that answer follows from the steps before it.\n"
        "\n"
        "End your reply with the verdict, in exactly this format and with nothing after it:\n"
        "Verdict: correct\n"
        "if every step is correct, or\n"
        "Verdict: incorrect\n"
        "First error: step N\n"
        "where N is the number of the first wrong step."
    )


def test_the_answer_prompt_shows_the_solution_as_written_and_no_reference() -> None:
    text = judge.render("answer", MADELINE, make_sample(MADELINE, SOLUTION))
    assert "## Proposed solution\n" + SOLUTION.strip() + "\n\n## How to check" in text
    assert "\\boxed{}" in text and "72\n" not in text.split("## Proposed solution")[0]


def test_a_prompt_showing_the_reference_needs_one() -> None:
    unlabelled = Problem(id="x", question="What is 2 + 2?", answer="")
    sample = make_sample(unlabelled, "2 + 2 = 4\n#### 4")
    with pytest.raises(ValueError, match="has none"):
        judge.render("steps", unlabelled, sample)
    assert "2 + 2 = 4" in judge.render("answer", unlabelled, sample)


# ------------------------------------------------------------------ parsing replies

PARSED = [
    ("Step 1: correct.\nStep 2: correct.\nStep 3: correct.\n\nVerdict: correct", True, None),
    ("Step 1: wrong, 48/2 is 24.\n\nVerdict: incorrect\nFirst error: step 1", False, 1),
    ("**Verdict:** Incorrect\n**First error:** Step 3", False, 3),
    ("**Verdict**: **correct**", True, None),
    ("Verdict - Correct", True, None),
    ("VERDICT: INCORRECT\nFIRST ERROR: STEP 12", False, 12),
    ("verdict: incorrect\nfirst error: step 2 (48*2 is not half of 48)", False, 2),
    ("Final Verdict: Incorrect\nFirst error: step #4", False, 4),
    ("## Verdict\n\n**Incorrect**\n\nThe first error is in step 2.", False, 2),
    ("Everything checks out, so the verdict is correct.", True, None),
    ("- Verdict: correct.", True, None),
    # a judge that revises itself: the last verdict wins
    (
        "Verdict: correct\n\nWait, step 2 doubles instead of halving.\nVerdict: incorrect\nFirst error: step 2",
        False,
        2,
    ),
    (
        "Verdict: incorrect\nFirst error: step 2\n\nOn reflection step 2 is fine.\nVerdict: correct",
        True,
        None,
    ),
    ("Verdict: incorrect", False, None),
    ("Verdict: incorrect\nFirst error: none", False, None),
    ("Verdict: incorrect\nFirst error: step N", False, None),  # the format line, echoed
    # no verdict: unparsable
    ("The solution is incorrect because step 2 is wrong.", None, None),
    (
        "The student's solution is correct, but it's not correct because it doesn't follow the logic",
        None,
        None,
    ),
    ("Verdict: correct|incorrect", None, None),
    ("Verdict: [correct/incorrect]", None, None),
    ("Verdict: not correct", None, None),
    ("Verdict:", None, None),
    ("", None, None),
]


@pytest.mark.parametrize(("text", "verdict", "first_error"), PARSED)
def test_parse_judgement(text: str, verdict: bool | None, first_error: int | None) -> None:
    status = "unparsable" if verdict is None else "ok"
    assert parse_judgement(text) == Judgement(verdict, first_error, status)


# ------------------------------------------------------------------ requests and keys


def test_judgement_keys_are_pinned_and_name_the_prompt_version() -> None:
    """Stable across processes (hashes, not ``hash()``), and built like every sample's key."""
    [request] = judge.judge_requests(
        "steps",
        "judge",
        "gsm8k",
        {MADELINE.id: MADELINE},
        [make_sample(MADELINE, SOLUTION, index=3)],
        PARAMS,
        0,
    )
    assert request.key == "judge|gsm8k|gsm8k-train-2566@99e7d65293f4b630|3|856208830468618723|4371f1c854e8"
    assert request.params == {**PARAMS, "judge_prompt": "judge-steps-v1", "chat": None}
    assert request.prompt == judge.render("steps", MADELINE, make_sample(MADELINE, SOLUTION, index=3))
    assert request.key == sample_key(
        request.model, request.dataset, request.problem_id, request.index, request.params, request.seed
    )
    bumped = {**request.params, "judge_prompt": "judge-steps-v2"}
    assert request.key != sample_key(
        request.model, request.dataset, request.problem_id, request.index, bumped, request.seed
    )


def test_one_key_per_judged_sample_that_changes_with_sample_prompt_and_judge() -> None:
    other = Problem(id="gsm8k-train-2200", question="How many legs do 7 chickens have?", answer="14")
    problems = {p.id: p for p in (MADELINE, other)}
    samples = [
        make_sample(MADELINE, SOLUTION),
        make_sample(MADELINE, SOLUTION, index=1),  # same text, another sample
        make_sample(MADELINE, SOLUTION, model="se"),  # same problem and index, another model
        make_sample(other, "7*2 = 14\n#### 14"),
    ]
    edited = [*samples[:3], make_sample(other, "7*2 = 14 legs\n#### 14")]  # same key, other text

    def keys(
        prompt_id: str = "steps", judge_model: str = "judge", judged: list[Sample] = samples
    ) -> list[str]:
        return [
            r.key for r in judge.judge_requests(prompt_id, judge_model, "gsm8k", problems, judged, PARAMS, 0)
        ]

    assert len(set(keys())) == len(samples)
    assert keys() == keys()
    assert keys()[:3] == keys(judged=edited)[:3] and keys()[3] != keys(judged=edited)[3]
    assert not set(keys()) & set(keys("answer"))
    assert not set(keys()) & set(keys(judge_model="judge-2"))
    with pytest.raises(ValueError, match="is not in the dataset"):
        judge.judge_requests("steps", "judge", "gsm8k", {}, samples, PARAMS, 0)


@pytest.fixture
def chat_tokenizer(tmp_path: Path) -> Path:
    """The toy tokenizer (which adds a BOS itself) with a chat template that writes one too."""
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED / "se")
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<assistant> {% endif %}"
    )
    tokenizer.save_pretrained(tmp_path / "chat")
    return tmp_path / "chat"


def test_the_chat_template_wraps_the_prompt_with_one_bos_and_enters_the_key(chat_tokenizer: Path) -> None:
    chat = ChatTemplate(str(chat_tokenizer))
    bos = chat.tokenizer.bos_token_id
    assert chat.tokenizer("x")["input_ids"][0] == bos
    text = chat("3 + 4")
    assert text == "<user> 3 + 4 <assistant> "
    assert chat.tokenizer(text)["input_ids"].count(bos) == 1
    sample = make_sample(MADELINE, SOLUTION)
    [plain] = judge.judge_requests("steps", "judge", "gsm8k", {MADELINE.id: MADELINE}, [sample], PARAMS, 0)
    [wrapped] = judge.judge_requests(
        "steps", "judge", "gsm8k", {MADELINE.id: MADELINE}, [sample], PARAMS, 0, chat=chat
    )
    assert wrapped.prompt == chat(plain.prompt) and wrapped.params["chat"] == chat.digest
    assert wrapped.key != plain.key
    with pytest.raises(ValueError, match="no \\(single\\) chat template"):
        ChatTemplate(str(SHIPPED / "se"))


def test_a_chat_api_judge_is_sent_messages_not_a_rendered_template(chat_tokenizer: Path) -> None:
    sample = make_sample(MADELINE, SOLUTION)
    problems = {MADELINE.id: MADELINE}
    [plain] = judge.judge_requests("steps", "judge", "gsm8k", problems, [sample], PARAMS, 0)
    api = {**PARAMS, **api_params("chat")}
    [chat] = judge.judge_requests("steps", "judge", "gsm8k", problems, [sample], api, 0)
    assert chat.messages == ({"role": "user", "content": plain.prompt},) and chat.prompt == plain.prompt
    assert plain.messages is None and chat.key != plain.key
    system = {**PARAMS, **api_params("chat", system_prompt="You grade math.")}
    [with_system] = judge.judge_requests("steps", "judge", "gsm8k", problems, [sample], system, 0)
    assert chat_messages(with_system) == [
        {"role": "system", "content": "You grade math."}, {"role": "user", "content": plain.prompt}
    ]
    with pytest.raises(ValueError, match="pass chat=None"):
        judge.judge_requests("steps", "judge", "gsm8k", problems, [sample], api, 0, chat=ChatTemplate(str(chat_tokenizer)))


# ------------------------------------------------------------------ judging through a real backend


def test_judgements_survive_a_crash_and_are_reused(tmp_path: Path) -> None:
    """The shipped toy model as a (hopeless) judge: the machinery, not the verdicts."""
    problems = {MADELINE.id: MADELINE}
    samples = [make_sample(MADELINE, SOLUTION, index=j) for j in range(4)]
    sampler = HFSampler(str(SHIPPED / "se"), batch_size=4, device="cpu")
    params = {**PARAMS, "max_new_tokens": 4}
    store = SampleStore(tmp_path / "judgements")
    requests = judge.judge_requests("steps", "toy-se", "gsm8k", problems, samples, params, 0)

    def run(open_judge, store):
        return judge.judge_samples(open_judge, store, samples, requests)

    crashing = Spy(sampler, crash_on=1)
    crashing.chunk_size = 2  # ensure_samples stores every 2 judgements
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(lambda: nullcontext(crashing), store)
    assert len(store.keys()) == 2

    resumed = Spy(sampler)
    judgements = run(lambda: nullcontext(resumed), SampleStore(store.root))
    assert [len(call) for call in resumed.calls] == [2]
    assert list(judgements) == [s.key for s in samples]
    replies = SampleStore(store.root).select([r.key for r in requests])
    assert list(judgements.values()) == [parse_judgement(r.text) for r in replies]

    idle = Spy(sampler)
    again = run(lambda: nullcontext(idle), SampleStore(store.root))
    assert idle.calls == [] and again == judgements


# ------------------------------------------------------------------ verdicts


def test_step_judgements_set_steps_correct_where_judged() -> None:
    verdicts = [
        Verdict("a", "p", 0, "72", True, None, "ok"),
        Verdict("b", "p", 1, "72", True, None, "ok"),
        Verdict("c", "p", 2, "72", True, None, "ok"),
        Verdict("d", "p", 3, "70", False, None, "ok"),  # wrong answer: not judged for FPR
    ]
    judged = judge.apply_step_judgements(
        verdicts,
        {
            "a": Judgement(True, None, "ok"),
            "b": Judgement(False, 2, "ok"),
            "c": Judgement(None, None, "unparsable"),
        },
    )
    assert [v.steps_correct for v in judged] == [True, False, None, None]
    assert [v.correct for v in judged] == [True, True, True, False] and judged[3] is verdicts[3]
    with pytest.raises(ValueError, match="without a verdict, e.g. 'z'"):
        judge.apply_step_judgements(verdicts, {"z": Judgement(True, None, "ok")})


def test_label_free_verdicts_keep_what_the_judge_accepted() -> None:
    samples = [make_sample(MADELINE, SOLUTION, index=j) for j in range(3)]
    judgements = {
        samples[0].key: Judgement(True, None, "ok"),
        samples[1].key: Judgement(False, None, "ok"),
        samples[2].key: Judgement(None, None, "unparsable"),
    }
    verdicts = judge.label_free_verdicts(samples, judgements)
    assert [(v.key, v.index, v.correct, v.status) for v in verdicts] == [
        (samples[0].key, 0, True, "judged"),
        (samples[1].key, 1, False, "judged"),
        (samples[2].key, 2, False, "unparsable"),
    ]
    assert all(v.extracted is None and v.steps_correct is None for v in verdicts)
    with pytest.raises(ValueError, match="were not judged"):
        judge.label_free_verdicts(samples, {})


# ------------------------------------------------------------------ slow: a real instruct judge

@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"benchmark files not found in {SHARED_DATA}")
def test_smollm2_judges_real_gsm8k_samples_end_to_end(
    smollm2: Path, compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """Three GSM8K reference solutions and one with a wrong step but the right answer (a false
    positive), judged by both prompts through the hf backend. SmolLM2 is a weak judge: its
    verdicts are printed, not asserted."""
    lines = (SHARED_DATA / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    problems = {
        p.id: p for p in (FORMATS["gsm8k"](json.loads(line), "train", i) for i, line in enumerate(lines))
    }
    samples = [make_sample(p, p.solution, model="reference") for p in problems.values()]
    natalia = problems["gsm8k-train-0"]
    corrupted = natalia.solution.replace("48/2 = <<48/2=24>>24", "48*2 = <<48*2=24>>24")  # doubles, yet 24
    assert corrupted != natalia.solution
    samples.append(make_sample(natalia, corrupted, model="corrupted"))
    verdicts = verify_samples("gsm8k", problems, samples)
    assert all(v.correct for v in verdicts)  # the corrupted one too: its final answer is right

    params = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 200}
    chat = ChatTemplate(str(smollm2))
    store = SampleStore(tmp_path / "judgements")
    cfg = compose_cfg("sampler=hf", "sampler.device=cpu").sampler
    def requests_of(prompt_id: str) -> list:
        return judge.judge_requests(prompt_id, "smollm2-135m-instruct", "gsm8k", problems, samples, params, 0, chat=chat)

    def run(open_judge, store, prompt_id):
        return judge.judge_samples(open_judge, store, samples, requests_of(prompt_id))

    with open_sampler(cfg, str(smollm2), batch_size=4) as sampler:
        spy = Spy(sampler)
        start = time.perf_counter()
        judged = {prompt_id: run(lambda: nullcontext(spy), store, prompt_id=prompt_id) for prompt_id in ("steps", "answer")}
        seconds = time.perf_counter() - start
        assert [len(call) for call in spy.calls] == [4, 4]

        for prompt_id, judgements in judged.items():
            assert list(judgements) == [s.key for s in samples]
            assert {j.status for j in judgements.values()} <= {"ok", "unparsable"}
            replies = store.select([r.key for r in requests_of(prompt_id)])
            assert list(judgements.values()) == [parse_judgement(r.text) for r in replies]
            for sample, reply in zip(samples, replies, strict=True):
                assert reply.prompt.startswith("<|im_start|>") and reply.prompt.endswith(
                    "<|im_start|>assistant\n"
                )
                assert reply.params["judge_prompt"] == judge.template(prompt_id).version
                print(
                    f"\n=== {prompt_id} judge on {sample.model} {sample.problem_id}: "
                    f"{judgements[sample.key]} ({reply.generated_tokens} tokens, {reply.finish_reason})\n"
                    f"{reply.text}"
                )
        print(f"\n=== {sum(len(c) for c in spy.calls)} judgements in {seconds:.1f} s")

        idle = Spy(sampler)
        again = run(lambda: nullcontext(idle), SampleStore(store.root), prompt_id="steps")
        assert idle.calls == [] and again == judged["steps"]

    fpr_verdicts = judge.apply_step_judgements(verdicts, judged["steps"])
    assert [v.steps_correct for v in fpr_verdicts] == [j.verdict for j in judged["steps"].values()]
    label_free = judge.label_free_verdicts(samples, judged["answer"])
    assert {v.status for v in label_free} <= {"judged", "unparsable"}
