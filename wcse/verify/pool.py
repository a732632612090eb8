"""Map a function over many items in worker processes, with a time limit per item enforced by the pool.

Verifiers meet pathological inputs (``2^{2^{2^{100}}}``, deeply nested LaTeX, code that never
returns). A timeout based on ``signal.alarm`` only works in a main thread and cannot interrupt
C code such as a huge integer power; killing the worker process always works.

Each worker has its own pipe and runs one task at a time, so the parent always knows which
task a worker holds: a worker that runs past its deadline is killed and replaced, and one that
dies is charged to the task it held. (pebble's ProcessPool does the killing too, but it learns
which worker took a task from a message that can arrive after the worker's death is noticed,
and then charges a crash to the worker's previous, innocent task; a verifier cannot afford that.)

A worker's deadline starts when it is ready (its imports done), never while it starts: on a
loaded machine a fresh interpreter can take seconds to import math-verify and sympy, and that
must not turn a correct sample into a ``timeout``.

Items travel in chunks, because one task per item would spend more time in inter-process
traffic than in checking a GSM8K number. A chunk gets ``timeout_s`` in all; when it runs out,
raises or kills its worker, its items are re-run one at a time, each with ``timeout_s``, so only
the item that is slow on its own ends as a ``timeout`` and the one that fails as an ``error``.
Workers are fresh interpreters (``python -m wcse.verify.pool``), not forks: forking would copy
the threads of a parent that has already run torch or vLLM, and multiprocessing's spawn and
fork-server modes re-import the parent's ``__main__`` (torch, transformers) in every worker.
A worker imports only what unpickling ``fn`` needs, in well under a second.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Failure:
    """An item that gave no result: ``timeout`` (ran past its limit) or ``error`` (raised or crashed)."""

    status: str
    detail: str


def default_workers() -> int:
    """The CPUs this process may use (a SLURM or taskset allocation, not the whole node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


READY = "ready"  # what a worker sends once ``fn`` is loaded, before it is given any item


def _serve(conn: Connection) -> None:
    """A worker's loop: ``fn`` first (its imports), then one chunk in, its results (or what it
    raised) out."""
    fn = conn.recv()
    conn.send(READY)
    while (chunk := conn.recv()) is not None:
        try:
            conn.send((True, [fn(item) for item in chunk]))
        except Exception as err:  # whatever fn raised is this chunk's (and then its item's) verdict
            conn.send((False, f"{type(err).__name__}: {err}"))


class _Worker:
    """One worker process and its end of a socket pair; it holds at most one task at a time."""

    def __init__(self, fn_bytes: bytes) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # fn's module must import
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno())], pass_fds=[theirs.fileno()], env=env
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send_bytes(fn_bytes)
        self.ready = False  # until it has loaded fn: its imports never count against an item's time
        self.task: tuple[int, int] | None = None  # (start, size) of the chunk it holds
        self.deadline = 0.0

    def started(self) -> None:
        """Take the worker's ready message; a worker that dies while starting is an error for
        every item, not a timeout of the first one."""
        try:
            message = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"a verifier worker died while starting (exit code {self.process.wait(5)})") from None
        if message != READY:
            raise RuntimeError(f"a verifier worker sent {message!r} before it was ready")
        self.ready = True

    def give(self, task: tuple[int, int], chunk: Sequence[Any], timeout_s: float) -> None:
        self.task, self.deadline = task, time.monotonic() + timeout_s
        self.conn.send(list(chunk))

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.conn.close()


def map_with_timeout(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    timeout_s: float,
    workers: int | None = None,
    chunk_size: int = 64,
    desc: str = "",
) -> list[R | Failure]:
    """``[fn(item) for item in items]``, in order, where an item that is too slow or fails is a Failure.

    ``fn`` must be picklable: a module-level function or a ``functools.partial`` of one.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not items:
        return []
    fn_bytes = pickle.dumps(fn)
    results: list[Any] = [None] * len(items)
    queue = deque((start, min(chunk_size, len(items) - start)) for start in range(0, len(items), chunk_size))
    pool = [_Worker(fn_bytes) for _ in range(min(workers or default_workers(), len(queue)))]
    try:
        with tqdm(total=len(items), desc=desc, unit="item", leave=False) as bar:
            while queue or any(w.task for w in pool):
                for worker in pool:
                    if worker.ready and worker.task is None and queue:
                        start, size = task = queue.popleft()
                        worker.give(task, items[start : start + size], timeout_s)
                busy = [w for w in pool if w.task]
                starting = [w for w in pool if not w.ready]
                now = time.monotonic()
                timeout = max(0.0, min(w.deadline for w in busy) - now) if busy else None
                ready = set(wait([w.conn for w in busy + starting], timeout=timeout))
                for worker in starting:
                    if worker.conn in ready:
                        worker.started()
                for i, worker in enumerate(pool):
                    if worker.task is None:
                        continue
                    start, size = worker.task
                    if worker.conn in ready:
                        try:
                            ok, payload = worker.conn.recv()
                        except EOFError:  # it died mid-task: segfault, out of memory, os._exit
                            ok, payload = False, f"worker died (exit code {worker.process.wait(5)})"
                        if ok:
                            results[start : start + size] = payload
                            bar.update(size)
                            worker.task = None
                            continue
                        failure = Failure("error", payload)
                    elif time.monotonic() >= worker.deadline:
                        failure = Failure("timeout", f"ran past {timeout_s:g} s")
                    else:
                        continue
                    if worker.process.poll() is not None or failure.status == "timeout":
                        worker.kill()
                        pool[i] = worker = _Worker(fn_bytes)
                    worker.task = None
                    if size > 1:  # find the culprit: every item of the chunk on its own
                        queue.extend((j, 1) for j in range(start, start + size))
                        continue
                    log.warning("%s: item %d: %s (%s)", desc or "map", start, failure.status, failure.detail)
                    results[start] = failure
                    bar.update(1)
    finally:
        for worker in pool:
            worker.kill()
    return results


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
