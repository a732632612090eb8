"""Run untrusted Python (model-written code) in sandboxed subprocesses.

Each program runs in a fresh ``python -I -S`` (no environment variables, user site or
site-packages: the standard library only, so a verdict does not depend on what else is
installed) with a minimal environment; its working, home and temp directory is a fresh empty
directory, removed afterwards. Before any of the program runs, the child
(:mod:`wcse.verify.sandbox_child`) sets up every isolation layer this machine supports
(:mod:`wcse.verify.isolation`: network and mount namespaces with read-only mounts, resource
limits, no capabilities, not dumpable, Landlock, seccomp), then installs a PEP 578 audit hook
(:mod:`wcse.verify.audit_policy`) that reports any violation as ``blocked``. The wall-clock
timeout kills the whole process group (``start_new_session``).

- :func:`run_python` runs one program, which *passes* if it runs to its end and exits 0: the
  child then writes a per-run random nonce, which the program never sees in its file, argv or
  environment, to a private pipe, so ``sys.exit(0)`` or ``os._exit(0)`` before the last assert
  is a failure. Code that walks the interpreter's frames can still find the nonce, so this is
  a verdict on code that does not try to fake one.
- :func:`run_judged` runs model-written code and the tests that judge it in two processes
  (:mod:`wcse.verify.remote`): the verdict is the test process's, which the code cannot reach.

Neither keeps global state or sends signals to itself: both are safe to call from threads and
from worker processes.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# What happened to a program, one of:
#   passed        ran to its end and exited 0 (every assert held)
#   failed        raised (an assert, a SyntaxError...), crashed, or exited before its end
#   timeout       ran past the wall-clock (or CPU) limit and was killed
#   memory        a MemoryError escaped (an allocation over the address-space limit)
#   output_limit  wrote more than ``output_bytes`` to stdout or stderr and was killed
#   blocked       tried something the policy denies (network, writes outside its directory,
#                 processes...), even if it caught the resulting error and went on to pass
STATUSES = ("passed", "failed", "timeout", "memory", "output_limit", "blocked")
# The statuses that say how a program was stopped, in precedence order: a policy violation
# outranks everything (it may be why the rest happened).
CONDUCT_STATUSES = ("blocked", "output_limit", "timeout", "memory")

REPOSITORY = str(Path(__file__).resolve().parents[2])
# The child's command: the repository is on sys.path only while the bootstrap is imported.
LAUNCHER = (
    f"import sys; sys.path.insert(0, {REPOSITORY!r}); from wcse.verify import sandbox_child; "
    "del sys.path[0]; import json; sandbox_child.main(json.loads(sys.argv[1]))"
)
ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC"}


@dataclass(frozen=True)
class Limits:
    """Per-program limits. ``memory_mb`` is address space, which exceeds resident memory (an
    interpreter maps ~30 MB before running anything), so do not set it much below 256.

    There is no process count: RLIMIT_NPROC counts a user's processes machine-wide and does not
    bind root, so new processes are refused outright instead (seccomp and the audit hook).
    """

    timeout_s: float = 10.0  # wall clock, interpreter start-up included
    memory_mb: int = 1024  # RLIMIT_AS
    output_bytes: int = 65536  # stdout and stderr, each
    disk_mb: int = 64  # largest file (RLIMIT_FSIZE); also the writable tmpfs's size, when there is one
    open_files: int = 64  # RLIMIT_NOFILE


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Execution:
    """The outcome of one program: ``status`` is one of STATUSES."""

    status: str
    returncode: int  # negative: killed by that signal
    stdout: str  # the first ``output_bytes`` (undecodable bytes replaced)
    stderr: str
    seconds: float  # wall clock, start-up included
    layers: tuple[str, ...] = ()  # the isolation layers that were in force
    blocked: tuple[str, ...] = ()  # the audit events the policy denied


@dataclass(frozen=True)
class Judged:
    """The outcome of code and its tests (:func:`run_judged`). ``status``: how the code or the
    tests were stopped, if they were; else ``passed`` if both ran to their end, else ``failed``."""

    status: str
    candidate: Execution  # the code's process (its passed / failed says nothing about the tests)
    judge: Execution  # the tests' process


def run_python(program: str, limits: Limits = DEFAULT_LIMITS) -> Execution:
    """Run ``program`` as ``__main__`` under every isolation layer this machine supports."""
    with tempfile.TemporaryDirectory(prefix="wcse-sandbox-", ignore_cleanup_errors=True) as home:
        child = _Child("program", program, limits, os.path.realpath(home))
        child.wait(child.started + limits.timeout_s)
        return child.result()


def run_judged(candidate: str, judge: str, limits: Limits = DEFAULT_LIMITS) -> Judged:
    """Run ``candidate`` (model-written code) and ``judge`` (its tests, run with
    :class:`wcse.verify.remote.JudgeGlobals`) in two sandboxed processes joined by two pipes,
    each under ``limits``, both within ``limits.timeout_s`` of the first's start."""
    requests, replies = os.pipe(), os.pipe()  # (read end, write end) each
    with (
        tempfile.TemporaryDirectory(prefix="wcse-sandbox-", ignore_cleanup_errors=True) as candidate_home,
        tempfile.TemporaryDirectory(prefix="wcse-sandbox-", ignore_cleanup_errors=True) as judge_home,
    ):
        children: list[_Child] = []
        try:
            children.append(
                _Child(
                    "candidate",
                    candidate,
                    limits,
                    os.path.realpath(candidate_home),
                    (requests[0], replies[1]),
                )
            )
            children.append(
                _Child("judge", judge, limits, os.path.realpath(judge_home), (requests[1], replies[0]))
            )
        except BaseException:
            for child in children:
                child.stop()
                child.wait(None)
            raise
        finally:
            for fd in (*requests, *replies):
                os.close(fd)
        code, tests = children
        if tests.wait(code.started + limits.timeout_s):
            code.kill_for_timeout()
        else:
            code.stop()  # the tests are over: whatever the code still does is moot
        code.wait(None)
        code_run, tests_run = code.result(), tests.result()
    statuses = (code_run.status, tests_run.status)
    status = next((s for s in CONDUCT_STATUSES if s in statuses), tests_run.status)
    if status == "passed" and "ready" not in code.messages:
        status = "failed"  # tests that never called the code cannot pass code that did not run
    return Judged(status, code_run, tests_run)


class _Drain(threading.Thread):
    """Read one pipe to its end, keeping the first ``limit`` bytes; past that, call ``overflow``
    (once) and discard the rest, so a flood neither blocks the child nor fills our memory."""

    def __init__(self, pipe: IO[bytes], limit: int, overflow: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.pipe, self.limit, self.overflow = pipe, limit, overflow
        self.data = bytearray()
        self.exceeded = False
        self.start()

    def run(self) -> None:
        with self.pipe:
            while chunk := self.pipe.read1(65536):
                room = self.limit - len(self.data)
                self.data += chunk[: max(room, 0)]
                if len(chunk) > room and not self.exceeded:
                    self.exceeded = True
                    self.overflow()


class _Child:
    """One sandboxed process, started by the constructor; ``wait``, then ``result``."""

    def __init__(
        self, role: str, program: str, limits: Limits, home: str, channel: tuple[int, ...] = ()
    ) -> None:
        self.nonce = os.urandom(16).hex()
        self.timed_out = self.stopped = False
        status_r, status_w = os.pipe()
        # The program travels as a descriptor of a file that has no name, so no other process
        # (the code, when this is its tests) can open it.
        with tempfile.TemporaryFile() as source:
            source.write(program.encode("utf-8", "surrogatepass"))
            source.flush()
            source.seek(0)
            config = {
                "role": role, "home": home, "status_fd": status_w, "program_fd": source.fileno(),
                "channel": list(channel), "timeout_s": limits.timeout_s, "memory_mb": limits.memory_mb,
                "disk_mb": limits.disk_mb, "open_files": limits.open_files,
            }  # fmt: skip
            self.started = time.monotonic()
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps(config)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=home,
                    env={**ENVIRONMENT, "HOME": home, "TMPDIR": home},
                    pass_fds=(status_w, source.fileno(), *channel),
                    start_new_session=True,
                )
            except BaseException:
                os.close(status_r)
                raise
            finally:
                os.close(status_w)
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        kill = functools.partial(_kill, self.proc)
        self.drains = [
            _Drain(pipe, limits.output_bytes, kill) for pipe in (self.proc.stdout, self.proc.stderr)
        ]
        self.reports = _Drain(os.fdopen(status_r, "rb"), 65536, kill)
        try:
            with self.proc.stdin:
                self.proc.stdin.write(self.nonce.encode() + b"\n")  # far below a pipe's buffer: never blocks
        except BrokenPipeError:
            pass  # the child died at start-up; its stderr says why

    def wait(self, deadline: float | None) -> bool:
        """Wait for the child until ``deadline`` (monotonic; None: until it ends, as after a kill),
        killing it then; whether it timed out."""
        try:
            self.proc.wait(timeout=None if deadline is None else max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self.kill_for_timeout()
            self.proc.wait()
        self.seconds = time.monotonic() - self.started
        return self.timed_out

    def kill_for_timeout(self) -> None:
        self.timed_out = True
        _kill(self.proc)

    def stop(self) -> None:
        """End the child for no fault of its own (its status is then passed or failed)."""
        self.stopped = True
        _kill(self.proc)

    def result(self) -> Execution:
        """How the child ended (after :meth:`wait`)."""
        for drain in (*self.drains, self.reports):
            drain.join(timeout=5)  # the child can have no descendants holding a pipe; this is a backstop
        prefix = self.nonce + " "  # the child's own messages: the program cannot forge them
        lines = self.reports.data.decode("utf-8", "replace").splitlines()
        self.messages = messages = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
        blocked = tuple(m.removeprefix("blocked ") for m in messages if m.startswith("blocked "))
        exceeded = any(d.exceeded for d in (*self.drains, self.reports))
        return Execution(
            status=self._status(exceeded, blocked, messages),
            returncode=self.proc.returncode,
            stdout=self.drains[0].data.decode("utf-8", "replace"),
            stderr=self.drains[1].data.decode("utf-8", "replace"),
            seconds=self.seconds,
            layers=tuple(m.removeprefix("layer ") for m in messages if m.startswith("layer ")),
            blocked=blocked,
        )

    def _status(self, output_exceeded: bool, blocked: tuple[str, ...], messages: list[str]) -> str:
        """In the precedence of CONDUCT_STATUSES."""
        returncode = self.proc.returncode
        if blocked:
            return "blocked"
        if output_exceeded:
            return "output_limit"
        # SIGXCPU / SIGKILL that we did not send: RLIMIT_CPU's soft and hard limits.
        if self.timed_out or (not self.stopped and returncode in (-signal.SIGXCPU, -signal.SIGKILL)):
            return "timeout"
        if "memory" in messages:
            return "memory"
        return "passed" if returncode == 0 and "done" in messages else "failed"


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group; ``poll`` first, so a reaped pid is never signalled."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
