from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from wcse.data.sources import FORMATS, carve_validation, load_split
from wcse.records import Problem

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark files not found in {DATA}")

# (format, split, file, rows in the published release)
FILES = [
    ("gsm8k", "train", "gsm8k/train.jsonl", 7473),
    ("math", "train", "math/train.jsonl", 7500),
    ("math", "test", "math500/test.jsonl", 500),
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
def test_carve_validation_is_seeded_disjoint_and_deterministic() -> None:
    train = _load("gsm8k", "train", "gsm8k/train.jsonl")
    rest, validation = carve_validation(train, 500, seed=0)
    assert (len(rest), len(validation)) == (len(train) - 500, 500)
    assert not {p.id for p in rest} & {p.id for p in validation}
    assert {p.id for p in rest} | {p.id for p in validation} == {p.id for p in train}
    again = carve_validation(train, 500, seed=0)
    assert again == (rest, validation)
    assert [p.id for p in carve_validation(list(reversed(train)), 500, seed=0)[1]] == [
        p.id for p in reversed(validation)
    ]  # the same problems however the input is ordered, returned in input order
    assert {p.id for p in carve_validation(train, 500, seed=1)[1]} != {p.id for p in validation}


def test_carve_validation_bounds() -> None:
    train = [Problem(id=f"p{i}", question="q", answer="1") for i in range(5)]
    assert carve_validation(train, 0, seed=0) == (train, [])
    assert carve_validation(train, 5, seed=0) == ([], train)
    with pytest.raises(ValueError, match="validation size 6"):
        carve_validation(train, 6, seed=0)


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
    assert set(FORMATS) == {"gsm8k", "math", "mbpp", "humaneval", "functional_math"}
