from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from wcse.verify.pool import Failure, map_with_timeout


def _behave(item: int) -> int:
    """Module level, so worker processes can unpickle it: a few items misbehave on purpose."""
    if item == -1:
        time.sleep(600)  # hangs
    if item == -2:
        os._exit(3)  # kills its worker
    if item == -3:
        raise ZeroDivisionError("bad item")
    return item * item


def test_results_keep_input_order_across_chunks() -> None:
    items = list(range(203))
    assert map_with_timeout(_behave, items, timeout_s=30, chunk_size=16, workers=2) == [i * i for i in items]
    assert map_with_timeout(_behave, [], timeout_s=1) == []


def test_a_hung_a_crashing_and_a_raising_item_each_fail_alone() -> None:
    items = [*range(100), -1, *range(100, 150), -2, 7, -3, 8]
    start = time.perf_counter()
    results = map_with_timeout(_behave, items, timeout_s=2.0, chunk_size=32, workers=2)
    elapsed = time.perf_counter() - start
    failures = {items[i]: r for i, r in enumerate(results) if isinstance(r, Failure)}
    assert {k: f.status for k, f in failures.items()} == {-1: "timeout", -2: "error", -3: "error"}
    assert "exit code 3" in failures[-2].detail and "ZeroDivisionError" in failures[-3].detail
    assert [r for r in results if not isinstance(r, Failure)] == [i * i for i in items if i >= 0]
    # the hung chunk waits out one timeout, then its items rerun singly: the hung one waits one more
    assert elapsed < 3 * 2.0 + 10


@pytest.mark.parametrize(("kwargs", "message"), [({"timeout_s": 0}, "timeout_s"), ({"timeout_s": 1, "chunk_size": 0}, "chunk_size")])
def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        map_with_timeout(_behave, [1], **kwargs)


def test_a_worker_slow_to_start_does_not_time_its_items_out(tmp_path, monkeypatch) -> None:
    """On a loaded machine a fresh worker can take seconds to import what ``fn`` needs; the
    deadline starts once it is ready, so the import never turns a quick item into a timeout."""
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(2.0)\n\ndef square(x):\n    return x * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import slow_import

    results = map_with_timeout(slow_import.square, list(range(6)), timeout_s=0.5, chunk_size=2, workers=2)
    assert results == [i * i for i in range(6)]


@pytest.mark.parametrize(("fmt", "heavy"), [("toy_arith", {"math_verify", "nltk", "scipy"}), ("math", {"nltk", "scipy"})])
def test_a_verifier_worker_imports_only_its_formats_checkers(fmt: str, heavy: set[str]) -> None:
    """Every pool start pays its worker's imports: IFEval's checkers (NLTK, SciPy) cost ~2.5 s and
    math-verify ~0.5 s, so a worker loads them only for a format that checks with them."""
    probe = (
        "import pickle, sys, functools; from wcse.verify import verifier; "
        f"fn = functools.partial(verifier._check_item, {fmt!r}, 'lenient'); pickle.loads(pickle.dumps(fn)); "
        "print(' '.join(sorted(m for m in sys.modules if '.' not in m)))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split())
    assert "wcse" in loaded and not loaded & heavy
