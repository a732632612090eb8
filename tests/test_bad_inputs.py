"""The bad-input corpus (issue 16): each input a careful user or a damaged disk can give, with its
clear error (naming the key, or the file and line), counted skip, or correct result.

The graders' and the code sandbox's cases are in their own corpora: ``tests/data/hard_cases.yaml``
(Unicode minus signs, ``2^3``) and ``tests/test_code_hacks.py`` (``__eq__``, ``mock.ANY``, frames).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_config
from wcse.artifacts import Cache
from wcse.data.sources import load_split
from wcse.errors import ConfigError, DataError, LockTimeout, MissingInput
from wcse.locks import HeldLock
from wcse.records import Sample, write_jsonl
from wcse.sampling.store import SampleStore
from wcse.settings import validate

# --- settings: every number in its domain, no unknown key in either form -------------------

SETTINGS = [
    ("sampler.temperature=-1", r"sampler\.temperature=-1: must be >= 0"),  # was: silently greedy
    ("dataset.max_train=-5", r"dataset\.max_train=-5: must be >= 1"),  # was: 5 problems dropped
    ("evaluator.limit=-2", r"evaluator\.limit=-2: must be >= 1"),
    ("trainer.max_steps=-1", r"trainer\.max_steps=-1: must be >= 1"),  # was: a checkpoint "step -1"
    ("+sampler.temprature=0.01", r"sampler\.temprature: unknown key \(did you mean sampler\.temperature\?\)"),
    ("sampler.batch_size=0", r"sampler\.batch_size=0: must be >= 1"),  # was: range() arg 3 must not be zero
    ("sampler.batch_size=-4", r"sampler\.batch_size=-4: must be >= 1"),
    ("verifier.workers=-1", r"verifier\.workers=-1: must be >= 1"),  # was: min() arg is an empty sequence
    ("paths.lock_timeout_s=0", r"paths\.lock_timeout_s=0: must be > 0"),
    ("model_pair.student.path=/no/such/model", r"model_pair\.student\.path='/no/such/model': no such folder"),
]


@pytest.mark.parametrize(("override", "message"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_a_bad_setting_fails_at_start_up_naming_its_key(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(tmp_path, override))


# --- data files: one decoding path, errors name the file and line --------------------------

GSM8K = b'{"question": "q1", "answer": "so #### 1"}\n{"question": "q2", "answer": "so #### 2"}\n'
BAD_FILES = [
    # (name, format, file bytes, the error after "<file>: ")
    ("not-utf8", "gsm8k", GSM8K + b'{"question": "caf\xe9", "answer": "#### 3"}\n', r"line 3: not UTF-8 \(byte 0xe9"),
    ("empty", "gsm8k", b"", r"the file is empty \(no rows\)"),  # was: a bare StopIteration
    ("whitespace", "gsm8k", b"  \n\t\r\n\n", r"the file is empty \(no rows\)"),
    ("empty-list", "gsm8k", b"[ ]\n", r"the file is an empty JSON list"),
    ("torn-line", "gsm8k", GSM8K + b'{"question": "q3", "ans', r"line 3: not a JSON-lines file"),
    ("not-an-object", "gsm8k", GSM8K + b'["q3", "#### 3"]\n', r"row 3: a JSON list, not an object"),
    ("blank-lines", "gsm8k", b'\n\n' + GSM8K + b'{"question": "q3"}\n', r"row 3 \(line 5\): missing key 'answer'"),
    (
        "json-list",  # was: the wrong row number
        "gsm8k",
        b'[\n  {"question": "q1", "answer": "#### 1"},\n  {"question": "q2",\n   "answer": "#### 2"},\n'
        b'  {"question": "q3"}\n]\n',
        r"row 3 \(line 5\): missing key 'answer'",
    ),
    ("json-list-torn", "gsm8k", b'[{"question": "q1", "answer": "#### 1"},\n{"question": ', r"line 2: invalid JSON"),
    (
        "duplicate-ids",  # was: MATH-500 with n=5, n_problems=4
        "math",
        b"".join(
            json.dumps({"problem": f"p{i}", "solution": "s", "answer": "1", "unique_id": uid}).encode() + b"\n"
            for i, uid in enumerate(["test/a/1.json", "test/a/2.json", "test/a/1.json"])
        ),
        r"row 3: duplicate problem id 'test/a/1\.json', already at row 1",
    ),
    (
        "duplicate-mbpp-task",
        "mbpp",
        b"".join(
            json.dumps({"task_id": 7, "text": "t", "code": "c", "test_list": ["assert f()"]}).encode() + b"\n"
            for _ in range(2)
        ),
        r"row 2: duplicate problem id 'mbpp-7', already at row 1",
    ),
    (
        "list-gold-answer",  # was: stored as the string "['3', '4']"
        "math",
        json.dumps({"problem": "p", "solution": "s", "answer": ["3", "4"]}).encode() + b"\n",
        r"row 1: key 'answer' is a JSON list \(\[\"3\", \"4\"\]\), not a single answer",
    ),
    (
        "dict-gold-answer",
        "math",
        json.dumps({"problem": "p", "solution": "s", "answer": {"value": 3}}).encode() + b"\n",
        r"row 1: key 'answer' is a JSON dict",
    ),
    (
        "mbpp-tests-not-a-list",
        "mbpp",
        json.dumps({"task_id": 1, "text": "t", "code": "c", "test_list": "assert f()"}).encode() + b"\n",
        r"row 1: key 'test_list' is not a list of test strings",
    ),
]


@pytest.mark.parametrize(("fmt", "content", "message"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_a_bad_data_file_names_its_file_and_line(tmp_path: Path, fmt: str, content: bytes, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"{path}: ") + message):
        load_split(fmt, "test", path=str(path))


GOOD_FILES = [
    ("bom-and-crlf", b"\xef\xbb\xbf" + GSM8K.replace(b"\n", b"\r\n")),
    ("json-list-with-bom", b'\xef\xbb\xbf[{"question": "q1", "answer": "so #### 1"},\r\n{"question": "q2", "answer": "so #### 2"}]'),
    ("blank-lines-between", GSM8K.replace(b"\n", b"\n\n")),  # ids count rows, not lines
]


@pytest.mark.parametrize("content", [c[1] for c in GOOD_FILES], ids=[c[0] for c in GOOD_FILES])
def test_a_file_in_any_of_the_accepted_layouts_reads_the_same(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    problems = load_split("gsm8k", "train", path=str(path))
    assert [(p.id, p.question, p.answer) for p in problems] == [("gsm8k-train-0", "q1", "1"), ("gsm8k-train-1", "q2", "2")]


def test_a_number_gold_answer_is_read_as_its_text_and_a_missing_file_is_missing_input(tmp_path: Path) -> None:
    path = tmp_path / "math.jsonl"
    path.write_text(json.dumps({"problem": "p", "solution": "s", "answer": 12}) + "\n", encoding="utf-8")
    assert load_split("math", "test", path=str(path))[0].answer == "12"
    with pytest.raises(MissingInput, match=re.escape(str(tmp_path / "nope.jsonl"))):
        load_split("math", "test", path=str(tmp_path / "nope.jsonl"))


# --- sample shards: a checksum per line, damage set aside and counted ----------------------


def _samples(n: int) -> list[Sample]:
    return [
        Sample(
            key=f"m|d|p{i}|0|0|abc", model="m", dataset="d", problem_id=f"p{i}", index=0, seed=0,
            params={"temperature": 0.7, "stop": ["\n\n"]}, prompt="Q: 2+2?", text=f"It is {27 + i}. #### {27 + i}",
            prompt_tokens=5, generated_tokens=27, finish_reason="stop", backend="test", seconds=0.25,
        )
        for i in range(n)
    ]


def _flip_digit(line: str) -> str:  # "#### 28" -> "#### 29": still valid JSON, still a Sample
    return line.replace("#### 28", "#### 29")


DAMAGE = [
    ("flipped-digit", _flip_digit, "checksum mismatch"),  # was: WC's correct count moved 27 -> 26 silently
    ("changed-field", lambda line: line.replace('"generated_tokens": 27', '"generated_tokens": 72'), "checksum mismatch"),
    ("checksum-removed", lambda line: re.sub(r', "checksum": "[0-9a-f]+"', "", line), "no 'checksum' key"),
    ("torn", lambda line: line[: len(line) // 2], "invalid JSON"),
    ("not-utf8", lambda line: line.replace("It is", "It\udce9is"), "not UTF-8"),
]


@pytest.mark.parametrize(("damage", "reason"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_a_damaged_shard_line_is_set_aside_counted_and_never_used(tmp_path: Path, caplog, damage, reason: str) -> None:
    written = _samples(3)
    SampleStore(tmp_path).append(written)
    (shard,) = SampleStore(tmp_path).shards()
    lines = shard.read_text(encoding="utf-8").splitlines()
    lines[1] = damage(lines[1])
    shard.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    store = SampleStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="wcse.sampling.store"):
        loaded = store.load()
    assert loaded == [written[0], written[2]]  # the damaged sample is not used; ensure_samples regenerates it
    assert store.set_aside == 1
    assert f"{shard}:2: {reason}" in caplog.text and "set aside 1 damaged lines" in caplog.text
    assert shard.with_suffix(".corrupt").is_file() and not shard.exists()  # kept for inspection
    assert SampleStore(tmp_path).load() == loaded and SampleStore(tmp_path).set_aside == 0  # repaired on disk


def test_a_shard_from_before_checksums_is_read_unverified_and_said_so(tmp_path: Path, caplog) -> None:
    old = _samples(2)
    write_jsonl(tmp_path / "shard-20240101T000000000000Z-old.jsonl", old)  # as shards were written before
    store = SampleStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="wcse.sampling.store"):
        assert store.load() == old
    assert store.unverified_shards == 1 and "1 shards were written before shard checksums" in caplog.text


# --- locks: the holder is named, the wait is bounded, a dead holder's lock is taken over ---

HOLD = textwrap.dedent(
    """
    import sys, time
    from wcse.locks import HeldLock
    with HeldLock(sys.argv[1], timeout_s=None):
        print("held", flush=True)
        time.sleep(60)
    """
)


@pytest.fixture
def held(tmp_path: Path):
    """``held(lock_path)``: a live process holding that lock (stopped at the end)."""
    started: list[subprocess.Popen] = []

    def hold(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        started.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield hold
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_lock_held_by_a_live_peer_is_reported_and_times_out_naming_it(tmp_path: Path, held, caplog) -> None:
    holder = held(tmp_path / "x.lock")
    with caplog.at_level(logging.WARNING, logger="wcse.locks"), pytest.raises(LockTimeout) as err:
        with HeldLock(tmp_path / "x.lock", timeout_s=1.0, report_every_s=0.3):
            pass
    who = f"pid {holder.pid} on {socket.gethostname()} since "
    assert who in str(err.value) and "paths.lock_timeout_s" in str(err.value)
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert len(reports) >= 2 and all(who in r for r in reports)  # said while waiting, not only at the end


@pytest.mark.parametrize("where", ["cache", "store"])
def test_the_cache_and_the_store_wait_with_their_lock_timeout(tmp_path: Path, held, where: str) -> None:
    if where == "cache":
        cache = Cache(tmp_path, lock_timeout_s=0.5)
        target = cache.path("verify", {"k": 1})
        held(Path(f"{target}.lock"))
        with pytest.raises(LockTimeout, match=re.escape(f"{target}.lock")):
            cache.get_or_build("verify", {"k": 1}, lambda out: (out / "f").write_text("x"))
    else:
        held(tmp_path / ".lock")
        with pytest.raises(LockTimeout, match=re.escape(str(tmp_path / ".lock"))):
            SampleStore(tmp_path, lock_timeout_s=0.5).append(_samples(1))
    assert compose_config(tmp_path).paths.lock_timeout_s == 6 * 3600  # the default a run passes to both


ORPHAN = textwrap.dedent(
    """
    import fcntl, json, os, socket, subprocess, sys
    path = sys.argv[1]
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    st = os.fstat(fd)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": "orphan", "since": "now",
              "inode": [st.st_dev, st.st_ino]}
    with open(path + ".holder", "w") as fh:
        json.dump(record, fh)
    child = subprocess.Popen(["sleep", "60"], pass_fds=[fd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(child.pid, flush=True)  # the child inherited the locked descriptor
    """
)


def test_a_lock_whose_holder_is_gone_is_taken_over(tmp_path: Path, caplog) -> None:
    path = tmp_path / "y.lock"
    out = subprocess.run([sys.executable, "-c", ORPHAN, str(path)], capture_output=True, text=True, check=True)
    child = int(out.stdout)  # still holds the flock; the recorded holder has exited
    try:
        with caplog.at_level(logging.WARNING, logger="wcse.locks"):
            with HeldLock(path, timeout_s=5.0, report_every_s=0.2) as lock:
                assert lock.holder()["pid"] == os.getpid()
        assert "took it over from pid" in caplog.text and "no longer running" in caplog.text
    finally:
        os.kill(child, 9)


# --- the command line: one clear line for a wcse error --------------------------------------


def test_main_prints_one_line_for_a_data_error(tmp_path: Path) -> None:
    data = tmp_path / "data" / "gsm8k"
    data.mkdir(parents=True)
    (data / "test.jsonl").write_bytes(GSM8K)
    (data / "train.jsonl").write_bytes(GSM8K + b'{"question": "caf\xe9", "answer": "#### 3"}\n')
    out = subprocess.run(
        [sys.executable, "-m", "wcse.main", "dataset=gsm8k", f"paths.data_dir={tmp_path / 'data'}",
         f"paths.cache_dir={tmp_path / 'cache'}", f"paths.run_dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"},
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"wcse: error: {data / 'train.jsonl'}: line 3: not UTF-8 (byte 0xe9: invalid continuation byte); save the file as UTF-8"
    ]
    assert "Traceback" not in out.stdout + out.stderr
