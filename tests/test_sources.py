from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, compose_config
from wcse.data import prompts
from wcse.data.registry import load_problems, provenance
from wcse.data.sources import FORMATS, load_split, seeded_subset, without
from wcse.records import Problem

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark files not found in {DATA}")

# (format, split, file, rows in the published release)
FILES = [
    ("gsm8k", "train", "gsm8k/train.jsonl", 7473),
    ("math", "train", "math/train.jsonl", 7500),
    ("math", "test", "math500/test.jsonl", 500),
    ("math", "test", "math/test.jsonl", 5000),
    ("gsm8k", "test", "gsm8k/test.jsonl", 1319),
    ("humaneval", "test", "humaneval/HumanEval.jsonl", 164),
    ("mbpp", "train", "mbpp/mbpp.jsonl", 974),
]
# Data-side defects of MATH train: these two multiple-choice solutions end in an empty
# \boxed{} (the answer letter was lost). They are kept, so the split keeps its published size.
EMPTY_GOLD = {"train/number_theory/7115.json", "train/number_theory/7117.json"}


@functools.cache
def _load(fmt: str, split: str, relative: str) -> list[Problem]:
    return load_split(fmt, split, path=str(DATA / relative))


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@needs_data
@pytest.mark.parametrize(("fmt", "split", "relative", "count"), FILES)
def test_every_file_loads_with_unique_ids(fmt: str, split: str, relative: str, count: int) -> None:
    problems = _load(fmt, split, relative)
    assert len(problems) == count
    assert len({p.id for p in problems}) == count
    assert all(p.question.strip() for p in problems)
    if fmt in ("gsm8k", "math"):
        empty = {p.id for p in problems if not p.answer.strip()}
        assert empty == (EMPTY_GOLD if relative == "math/train.jsonl" else set())


@needs_data
def test_gsm8k_fields() -> None:
    first = _load("gsm8k", "train", "gsm8k/train.jsonl")[0]
    assert (first.id, first.answer, first.level) == ("gsm8k-train-0", "72", None)
    assert first.solution.endswith("#### 72")
    answers = [p.answer for p in _load("gsm8k", "train", "gsm8k/train.jsonl")]
    assert not any("," in a for a in answers)  # "1,080" in the file: thousands commas dropped
    assert "1080" in answers


@needs_data
def test_math_fields() -> None:
    train = {p.id: p for p in _load("math", "train", "math/train.jsonl")}
    first = train["train/algebra/0.json"]
    assert (first.answer, first.level, first.subject) == ("0", 5, "Algebra")
    assert train["train/algebra/152.json"].answer == "(8,38)"  # the last of several boxes
    assert train["train/algebra/25040.json"].answer == "9"  # "\boxed 9" without braces
    assert {p.id for p in train.values() if p.level is None} == {
        "train/geometry/377.json",
        "train/geometry/471.json",
    }  # "Level ?" in the file
    test = _load("math", "test", "math500/test.jsonl")
    assert test[0].id == "test/precalculus/807.json"
    assert test[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"  # the `answer` field, verbatim
    assert (test[0].level, test[0].subject) == (2, "Precalculus")


@needs_data
def test_code_fields() -> None:
    humaneval = _load("humaneval", "test", "humaneval/HumanEval.jsonl")[0]
    assert humaneval.id == "HumanEval/0"
    assert humaneval.meta["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in humaneval.meta["test"]
    mbpp = {p.id: p for p in _load("mbpp", "train", "mbpp/mbpp.jsonl")}
    task = mbpp["mbpp-118"]  # starts with stray "[link text](https:// ..." in this copy
    assert task.question.startswith("[link text]")
    assert "convert a string to a list" in task.question
    assert task.question.endswith(task.meta["tests"][0])
    assert task.meta == {"tests": task.meta["tests"], "setup": ""} and len(task.meta["tests"]) == 3
    assert task.solution.startswith("def string_to_list")


@needs_data
def test_limit_takes_the_first_rows() -> None:
    head = load_split("gsm8k", "train", path=str(DATA / "gsm8k/train.jsonl"), limit=3)
    assert [p.id for p in head] == ["gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"]


@needs_data
def test_local_path_wins_over_hub() -> None:
    # No network here: reaching for the hub would fail, so success shows nothing was downloaded.
    problems = load_split(
        "math", "test", path=str(DATA / "math500/test.jsonl"), hub="no-such-owner/no-such-dataset"
    )
    assert len(problems) == 500


@needs_data
def test_seeded_subset_is_seeded_and_independent_of_input_order() -> None:
    train = _load("gsm8k", "train", "gsm8k/train.jsonl")
    chosen = seeded_subset(train, 500, seed=0)
    assert len(chosen) == 500 and len({p.id for p in chosen}) == 500
    assert seeded_subset(train, 500, seed=0) == chosen
    assert [p.id for p in seeded_subset(list(reversed(train)), 500, seed=0)] == [
        p.id for p in reversed(chosen)
    ]  # the same problems however the input is ordered, returned in input order
    assert {p.id for p in seeded_subset(train, 500, seed=1)} != {p.id for p in chosen}


def test_seeded_subset_bounds() -> None:
    problems = [Problem(id=f"p{i}", question="q", answer="1") for i in range(5)]
    assert seeded_subset(problems, 0, seed=0) == []
    assert seeded_subset(problems, 5, seed=0) == problems
    with pytest.raises(ValueError, match="subset size 6"):
        seeded_subset(problems, 6, seed=0)


def test_without_matches_by_id_or_by_question_text() -> None:
    a = Problem(id="test/algebra/1.json", question="What is  $1+1$?", answer="2")
    b = Problem(id="math-test-7", question="What is $1+1$?\n", answer="2")  # the hub's copy: no unique_id
    c = Problem(id="test/algebra/2.json", question="What is $2+2$?", answer="4")
    assert without([a, c], [b]) == [c] and without([b, c], [a]) == [c] and without([a], [c]) == [a]


@needs_data
def test_the_papers_splits(tmp_path: Path) -> None:
    """App. B of the paper: MATH 7,500 / 500 / 500 (validation from MATH test outside MATH-500),
    GSM8K 6,973 / 500 / 1,319 (validation carved from its 7,473 train problems): disjoint by id
    and by question, and each split says where it came from."""
    sizes = {"math": (7500, 500, 500), "gsm8k": (6973, 500, 1319), "mbpp": (874, 100, 164)}
    for name, expected in sizes.items():
        cfg = compose_config(tmp_path, f"dataset={name}", f"paths.data_dir={DATA}").dataset
        splits = load_problems(cfg)
        assert tuple(len(splits[s]) for s in ("train", "validation", "test")) == expected
        ids = {s: {p.id for p in splits[s]} for s in splits}
        assert not ids["train"] & ids["validation"] and not ids["validation"] & ids["test"]
        assert load_problems(cfg) == splits  # seeded
        where = provenance(cfg)
        assert where["validation"].endswith(f"seeded subset of {expected[1]} (seed 0)")
    math = compose_config(tmp_path, "dataset=math", f"paths.data_dir={DATA}").dataset
    splits = load_problems(math)
    assert all(p.id.startswith("test/") for p in splits["validation"])  # MATH test, never MATH-500
    assert not {" ".join(p.question.split()) for p in splits["validation"]} & {
        " ".join(p.question.split()) for p in splits["test"]
    }
    assert provenance(math)["validation"] == f"{DATA}/math/test.jsonl, minus test, seeded subset of 500 (seed 0)"


def test_an_exclude_cycle_or_unknown_split_is_an_error(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, "dataset=gsm8k", "dataset.validation.exclude=[train]").dataset
    with pytest.raises(ValueError, match="form a cycle"):
        load_problems(cfg)
    cfg = compose_config(tmp_path, "dataset=gsm8k", "dataset.test.exclude=[dev]").dataset
    with pytest.raises(ValueError, match=r"test.exclude=\['dev'\]"):
        load_problems(cfg)


def test_missing_file_is_an_error_not_a_hub_fallback(tmp_path: Path) -> None:
    missing = tmp_path / "gsm8k" / "test.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_split("gsm8k", "test", path=str(missing), hub="openai/gsm8k", hub_name="main")


def test_no_source_and_unknown_format() -> None:
    with pytest.raises(ValueError, match=r"format 'gsm8k', split 'test'"):
        load_split("gsm8k", "test")
    with pytest.raises(ValueError, match=r"unknown dataset format 'nope'.*'functional_math'"):
        load_split("nope", "test", path="x.jsonl")


def test_bad_row_names_file_row_and_key(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "bad.jsonl",
        [{"question": "q1", "answer": "so\n#### 1"}, {"question": "q2", "answer": "so\n#### 2"}, {"question": "q3"}],
    )
    with pytest.raises(ValueError, match=rf"{re.escape(path)}: row 3: missing key 'answer'"):
        load_split("gsm8k", "train", path=path)


def test_math_row_without_any_answer(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "math.jsonl", [{"problem": "p", "solution": "no box here", "level": "Level 1"}])
    with pytest.raises(ValueError, match=rf"{re.escape(path)}: row 1: missing key 'answer' and no \\boxed answer"):
        load_split("functional_math", "test", path=path)


def test_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_split("gsm8k", "train", path=str(path))


def test_functional_math_uses_math_rows_with_its_own_ids(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "fm.jsonl",
        [{"problem": "1+1?", "solution": "It is $\\boxed{\\frac{4}{2}}$.", "level": "Level 1", "type": "Algebra"}],
    )
    (problem,) = load_split("functional_math", "test", path=path)
    assert problem == Problem(
        id="functional_math-test-0",
        question="1+1?",
        answer="\\frac{4}{2}",
        solution="It is $\\boxed{\\frac{4}{2}}$.",
        level=1,
        subject="Algebra",
    )
    assert set(FORMATS) == {"gsm8k", "math", "mbpp", "humaneval", "functional_math", "oasst1", "ifeval"}


@needs_data
def test_mbpp_validation_holds_none_of_the_prompt_exemplars(tmp_path: Path) -> None:
    """MBPP's validation is a seeded 100 of the file that also holds the 3-shot prompt's tasks:
    ``exclude: [exemplars]`` keeps them out, so no checkpoint is chosen on problems its prompt solves."""
    cfg = compose_config(tmp_path, "dataset=mbpp", f"paths.data_dir={SHARED_DATA}").dataset
    exemplars = {e.id for e in prompts.template(cfg.prompt).exemplars}
    splits = load_problems(cfg)
    assert len(splits["validation"]) == 100 and not exemplars & {p.id for p in splits["validation"]}
    assert exemplars <= {p.id for p in splits["train"]}  # training on them is no leak
    assert provenance(cfg)["validation"].endswith("minus exemplars, seeded subset of 100 (seed 0)")
    with_them = compose_config(tmp_path, "dataset=mbpp", f"paths.data_dir={SHARED_DATA}", "dataset.validation.exclude=[]").dataset
    assert exemplars & {p.id for p in load_problems(with_them)["validation"]}  # the seeded 100 drew two of them
