"""``python -m wcse.verify`` and the verifier pool on real and pathological answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wcse.records import Problem
from wcse.verify.__main__ import main
from wcse.verify.verifier import check_all

TOWER = r"The answer is $\boxed{2^{2^{2^{2^{100}}}}}$."  # sympy would evaluate this for ever


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_pathological_answer_times_out_in_its_own_worker_and_the_batch_completes() -> None:
    gold = Problem(id="p", question="", answer="\\frac{1}{2}")
    items = [(gold, "So $\\boxed{0.5}$."), (gold, TOWER), *[(gold, "$\\boxed{\\frac12}$")] * 100, (gold, "no answer")]
    start = time.perf_counter()
    checks = check_all("math", items, "lenient", workers=2, timeout_s=3.0, chunk_size=16)
    elapsed = time.perf_counter() - start
    assert [c.status for c in checks] == ["ok", "timeout", *["ok"] * 100, "no_answer"]
    assert [c.correct for c in checks] == [True, False, *[True] * 100, False]
    assert elapsed < 3 * 3.0 + 15  # one chunk timeout, then the culprit's own


def test_cli_grades_rows_and_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"id": "a", "response": "She pays $1,234.\n#### 1,234", "answer": "1234"},
        {"id": "b", "response": "#### 72 clips. I checked 5 times.", "answer": 72},
        {"id": "c", "response": "I think it is 71", "answer": "72"},
        {"id": "d", "response": "no digits here", "answer": "3"},
    ]
    out = tmp_path / "graded.jsonl"
    assert main(["--dataset", "gsm8k", "--mode", "strict", str(_write(tmp_path / "in.jsonl", rows)), "--out", str(out)]) == 0
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(g["id"], g["correct"], g["extracted"], g["status"]) for g in graded] == [
        ("a", True, "1234", "ok"), ("b", True, "72", "ok"), ("c", False, "71", "ok"), ("d", False, None, "no_answer"),
    ]
    printed = capsys.readouterr().out
    assert "accuracy: 2/4 = 50.00% (gsm8k, strict)" in printed
    assert "no_answer: 1" in printed and "ok: 3" in printed


def test_cli_toy_rows_compare_the_final_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"response": "Ann has 3 ; 3 + 4 = 7 #### 7", "answer": "7"}, {"response": "#### 8", "answer": "7"}]
    assert main(["--dataset", "toy_arith", str(_write(tmp_path / "in.jsonl", rows))]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["correct"] for line in captured.out.splitlines()] == [True, False]  # rows to stdout
    assert "accuracy: 1/2" in captured.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"response": "x"}\n', "in.jsonl:1: missing key 'answer'"),
        ('{"response": "x", "answer": "1"}\n\n{"answer": "1"}\n', "in.jsonl:3: missing key 'response'"),
        ('{"response": "x", "answer": "1"}\nnot json\n', "in.jsonl:2: invalid JSON"),
        ('["response", "answer"]\n', "in.jsonl:1: a row must be a JSON object"),
        ('{"response": 5, "answer": "1"}\n', "in.jsonl:1: key 'response' must be a string"),
    ],
)
def test_cli_bad_rows_are_named_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "math", str(path), "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_as_a_module(tmp_path: Path) -> None:
    rows = [{"response": "so $\\boxed{[2,5)}$", "answer": "[2,5)"}, {"response": "$\\boxed{(2,5)}$", "answer": "[2,5)"}]
    result = subprocess.run(
        [sys.executable, "-m", "wcse.verify", "--dataset", "math", "--mode", "lenient", str(_write(tmp_path / "in.jsonl", rows))],
        capture_output=True, text=True, check=True, timeout=120,
    )
    assert [json.loads(line)["correct"] for line in result.stdout.splitlines()] == [True, False]
    assert "accuracy: 1/2 = 50.00% (math, lenient)" in result.stderr


# ------------------------------------------------------------------------- code datasets

# Rows in the datasets' own formats (MBPP's mbpp.jsonl, HumanEval's HumanEval.jsonl).
MBPP_ROWS = [
    {"text": "Write a function to add two numbers.", "code": "def add(a, b):\r\n  return a + b", "task_id": 11,
     "test_setup_code": "", "test_list": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"], "challenge_test_list": []},
    {"text": "Write a function for the sum of common divisors.", "task_id": 126, "test_setup_code": "",
     "code": "def sum(a, b):\r\n  return 1", "test_list": ["assert sum(10, 15) == 6"], "challenge_test_list": []},
]  # fmt: skip
HUMANEVAL_ROWS = [
    {"task_id": "HumanEval/0", "prompt": "def inc(x: int) -> int:\n    \"\"\"x + 1\"\"\"\n",
     "canonical_solution": "    return x + 1\n", "entry_point": "inc",
     "test": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n"},
]  # fmt: skip


def test_cli_grades_mbpp_rows_by_task_id_into_a_new_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    problems = _write(tmp_path / "mbpp.jsonl", MBPP_ROWS)
    preds = [
        {"task_id": 11, "response": "```python\ndef add(a, b):\n    return a + b\n```", "model": "m"},
        {"task_id": "11", "response": "def add(a, b):\n    return a - b"},
        {"task_id": "mbpp-126", "response": "def sum(a, b):\n    return 6"},
        {"task_id": 11, "response": "I cannot do that."},
    ]
    out = tmp_path / "new" / "dir" / "graded.jsonl"
    argv = ["--dataset", "mbpp", "--problems", str(problems), str(_write(tmp_path / "in.jsonl", preds)), "--out", str(out), "--workers", "2"]
    assert main(argv) == 0
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(g["correct"], g["status"]) for g in graded] == [(True, "ok"), (False, "ok"), (True, "ok"), (False, "no_answer")]
    assert graded[0]["model"] == "m" and graded[0]["extracted"] == "def add(a, b):\n    return a + b"
    assert "accuracy: 2/4 = 50.00% (mbpp, lenient)" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["graded.jsonl"]  # no temporary file left


def test_cli_grades_humaneval_completions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    problems = _write(tmp_path / "HumanEval.jsonl", HUMANEVAL_ROWS)
    preds = [{"task_id": "HumanEval/0", "response": "    return x + 1\n"}, {"task_id": "HumanEval/0", "response": "    return x\n"}]
    assert main(["--dataset", "humaneval", "--problems", str(problems), str(_write(tmp_path / "in.jsonl", preds))]) == 0
    assert [json.loads(line)["correct"] for line in capsys.readouterr().out.splitlines()] == [True, False]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"response": "x"}], "in.jsonl:1: missing key 'task_id'"),
        ([{"task_id": 11, "response": "x"}, {"task_id": 12, "response": "x"}], "in.jsonl:2: key 'task_id': 12 is not a mbpp task"),
        ([{"task_id": True, "response": "x"}], "in.jsonl:1: key 'task_id' must be a string or an integer"),
        ([{"task_id": 11, "response": None}], "in.jsonl:1: key 'response' must be a string"),
    ],
)
def test_cli_bad_code_rows_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[dict], message: str) -> None:
    problems = _write(tmp_path / "mbpp.jsonl", MBPP_ROWS)
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "mbpp", "--problems", str(problems), str(_write(tmp_path / "in.jsonl", rows))])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_a_bad_problems_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = _write(tmp_path / "in.jsonl", [{"task_id": 11, "response": "x"}])
    broken = _write(tmp_path / "mbpp.jsonl", [{**MBPP_ROWS[0], "test_list": []}])
    for problems, message in ((tmp_path / "missing.jsonl", "missing.jsonl"), (broken, "row 1: key 'test_list' is empty")):
        with pytest.raises(SystemExit):
            main(["--dataset", "mbpp", "--problems", str(problems), str(preds)])
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "mbpp"], "--problems FILE is needed for mbpp and humaneval"),
        (["--dataset", "math", "--problems", "x.jsonl"], "--problems FILE is needed for mbpp and humaneval, and only for them"),
        (["--dataset", "math", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["--dataset", "math", "--workers", "-1"], "argument --workers: must be >= 1, got -1"),
        (["--dataset", "math", "--workers", "two"], "argument --workers: not a number: 'two'"),
        (["--dataset", "math", "--timeout", "0"], "argument --timeout: must be > 0, got 0"),
    ],
)
def test_cli_bad_flags_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    preds = _write(tmp_path / "in.jsonl", [{"response": "x", "answer": "1"}])
    with pytest.raises(SystemExit) as exit_info:
        main([*args, str(preds)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_an_unwritable_out_fails_before_grading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found before any row is graded (the grading would take the 5 s of the response's loop)."""
    problems = _write(tmp_path / "mbpp.jsonl", MBPP_ROWS)
    preds = _write(tmp_path / "in.jsonl", [{"task_id": 11, "response": "import time\ntime.sleep(5)\ndef add(a, b):\n    return a + b"}])
    a_file = _write(tmp_path / "a_file", [])
    for out, message in ((tmp_path, "is a directory"), (a_file / "out.jsonl", "cannot write there")):
        started = time.monotonic()
        with pytest.raises(SystemExit) as exit_info:
            main(["--dataset", "mbpp", "--problems", str(problems), str(preds), "--out", str(out)])
        assert exit_info.value.code == 2 and time.monotonic() - started < 4
        assert f"error: --out {out}: {message}" in capsys.readouterr().err
