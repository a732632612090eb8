"""Crash safety of sampling, for real: the CLI killed with SIGKILL, rerun, and run twice at once.

Each test drives ``python -m wcse.main stages=[dataset,sample]`` on the toy world (HF backend,
WC 3 + SE 1 samples for each of 120 problems) in child processes and reads the store's shards
raw afterwards: every line valid JSON, no key twice even at the file level, and the same keys
as an uninterrupted reference run in another cache directory.

Kill points are drawn, seeded, inside four phases of a run (start-up, WC's first chunk, WC's
later chunk, SE), each as a random fraction of that phase's length in the reference run. A
phase is anchored on what the child does rather than on the wall clock since its start, so
that a machine shared with other jobs cannot push a kill out of its phase: a phase starts at
a log line (``sample wc:`` / ``sample se:``, logged by ``ensure_samples``) or at a shard
appearing, and ends at the next such event, where the kill then happens at once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT
from wcse.records import Sample, from_dict, verify_checksum

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

COMMAND = [
    sys.executable,
    "-m",
    "wcse.main",
    "stages=[dataset,sample]",
    "dataset.toy.n_train=120",
    "budget=low",
    "sampler.batch_size=16",
]
# One torch thread per child: the machine has two shared cores, and two threads per process
# made a run 3-5x slower; unbuffered, so the log lines the kills are anchored on arrive at once.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
POLL_S = 0.01
EXIT_TIMEOUT_S = 300
KILL_SEED = 20240829


def shards(cache: Path) -> list[Path]:
    return sorted((cache / "samples").glob("*/shard-*.jsonl"))


@dataclass
class Child:
    """One CLI process writing its stdout and stderr to ``out``."""

    cache: Path
    out: Path
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def launch(cls, cache: Path, name: str) -> Child:
        out = cache.parent / f"{name}.out"
        with open(out, "wb") as fh:
            proc = subprocess.Popen(
                [*COMMAND, f"paths.cache_dir={cache}", f"hydra.run.dir={cache.parent / name}"],
                cwd=ROOT,
                env=ENV,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        return cls(cache, out, proc)

    def said(self, text: str) -> bool:
        return text in self.out.read_text(errors="replace")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def finish(self) -> None:
        """Wait for a normal exit; a failure shows the end of the child's output."""
        rc = self.proc.wait(timeout=EXIT_TIMEOUT_S)
        assert rc == 0, f"{self.out.name}: exit status {rc}\n{self.out.read_text(errors='replace')[-3000:]}"


Event = Callable[[], bool]


def said(child: Child, text: str) -> Event:
    return lambda: child.said(text)


def shard_added(child: Child) -> Event:
    """True once a shard beyond those present now exists (a chunk of samples was stored)."""
    before = len(shards(child.cache))
    return lambda: len(shards(child.cache)) > before


def wait_for(child: Child, event: Event, what: str) -> None:
    while not event():
        if child.proc.poll() is not None:
            raise AssertionError(f"{child.out.name}: exited ({child.proc.returncode}) before {what}")
        if child.elapsed() > EXIT_TIMEOUT_S:
            raise AssertionError(f"{child.out.name}: no {what} after {EXIT_TIMEOUT_S}s")
        time.sleep(POLL_S)


@dataclass(frozen=True)
class Phase:
    """A kill window: from the event ``start`` makes (None: the launch) until the one ``end`` makes."""

    name: str
    start: Callable[[Child], Event] | None
    end: Callable[[Child], Event]


PHASES = (
    Phase("start-up", None, lambda c: said(c, "sample wc:")),
    Phase("WC, first chunk", lambda c: said(c, "sample wc:"), shard_added),
    Phase("WC, later chunk", shard_added, lambda c: said(c, "sample se:")),
    Phase("SE", lambda c: said(c, "sample se:"), shard_added),
)


def stored(cache: Path) -> Counter[tuple[str, str]]:
    """(store, key) of every shard line, read raw: each must be a valid, checksummed Sample JSON line."""
    assert not list((cache / "samples").glob("*/*.corrupt")), "a shard was damaged"
    lines: Counter[tuple[str, str]] = Counter()
    for shard in shards(cache):
        for lineno, line in enumerate(shard.read_text(encoding="utf-8").splitlines(), 1):
            try:
                sample = from_dict(Sample, verify_checksum(json.loads(line)), f"{shard}:{lineno}")
            except ValueError as err:
                raise AssertionError(f"{shard}:{lineno}: not a sample line: {err}") from None
            lines[shard.parent.name, sample.key] += 1
    return lines


def assert_once_each(cache: Path, expected: set[tuple[str, str]]) -> None:
    lines = stored(cache)
    twice = [key for key, n in lines.items() if n > 1]
    assert not twice, f"{len(twice)} keys stored more than once, e.g. {twice[0]}"
    assert set(lines) == expected, (
        f"missing {len(expected - set(lines))}, unexpected {len(set(lines) - expected)}"
    )


@dataclass(frozen=True)
class Reference:
    keys: set[tuple[str, str]]
    seconds: float
    phase_seconds: dict[str, float]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """An uninterrupted run: its keys, and how long each kill phase lasted in it."""
    child = Child.launch(tmp_path_factory.mktemp("reference") / "cache", "run")
    seen: dict[str, float] = {}
    shard_times: list[float] = []
    while child.proc.poll() is None:
        now = child.elapsed()
        for text in ("sample wc:", "sample se:"):
            if text not in seen and child.said(text):
                seen[text] = now
        shard_times += [now] * (len(shards(child.cache)) - len(shard_times))
        time.sleep(POLL_S)
    child.finish()
    seconds = child.elapsed()
    wc, se = seen["sample wc:"], seen["sample se:"]
    spans = {
        "start-up": wc,
        "WC, first chunk": shard_times[0] - wc,
        "WC, later chunk": se - shard_times[0],
        "SE": next(t for t in shard_times if t >= se) - se,
    }
    assert list(spans) == [p.name for p in PHASES]
    keys = stored(child.cache)
    assert len(keys) == 120 * (3 + 1) and set(keys.values()) == {1}
    print(f"\nreference run: {seconds:.1f}s, phases (s): { ({k: round(v, 2) for k, v in spans.items()}) }")
    return Reference(set(keys), seconds, spans)


def test_kill_9_at_random_points_then_rerun_stores_every_key_once(
    reference: Reference, tmp_path: Path
) -> None:
    """Kill, restart, kill again ... in every phase, then a full run: the reference's keys, once."""
    assert reference.seconds > sum(reference.phase_seconds.values())  # the kill points lie within a run
    rng = random.Random(KILL_SEED)
    cache = tmp_path / "cache"
    for attempt, phase in enumerate(PHASES):
        child = Child.launch(cache, f"killed-{attempt}")
        if phase.start is not None:
            wait_for(child, phase.start(child), f"phase {phase.name!r}")
        end = phase.end(child)
        delay = rng.uniform(0.15, 0.85) * reference.phase_seconds[phase.name]
        deadline = time.perf_counter() + delay
        while time.perf_counter() < deadline and not end():
            time.sleep(POLL_S)
        assert child.proc.poll() is None, f"{child.out.name} exited before its kill in phase {phase.name!r}"
        os.kill(child.proc.pid, signal.SIGKILL)
        assert child.proc.wait(timeout=EXIT_TIMEOUT_S) == -signal.SIGKILL
        lines = stored(cache)  # what a crash leaves must already be readable and duplicate-free
        assert set(lines.values()) <= {1} and set(lines) <= reference.keys
        print(
            f"killed in phase {phase.name!r} at {child.elapsed():.2f}s ({delay:.2f}s in): {len(lines)} keys stored"
        )
    Child.launch(cache, "rerun").finish()
    assert_once_each(cache, reference.keys)


def test_two_concurrent_writers_store_every_key_once(reference: Reference, tmp_path: Path) -> None:
    """Two identical runs on one fresh cache at once: both succeed, each key is stored once."""
    cache = tmp_path / "cache"
    children = [Child.launch(cache, f"writer-{i}") for i in range(2)]
    for child in children:
        child.finish()
    assert_once_each(cache, reference.keys)
    for child in children:  # how far the other writer had got when each one looked
        print(
            child.out.name, [line for line in child.out.read_text().splitlines() if "samples exist" in line]
        )
