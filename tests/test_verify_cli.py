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
