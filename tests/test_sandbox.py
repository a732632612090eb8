"""The sandbox against real hostile programs: every test runs real code in a real child process.

Each escape attempt is checked twice where it can be: by its status (the audit hook caught it)
and by its effect (the listener got no connection, the file outside does not exist). The kernel
layers are also tested on their own, without the hook, and the fallback without namespaces and
Landlock.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from wcse.verify import isolation
from wcse.verify.sandbox import STATUSES, Execution, Limits, run_python

ROOT = Path(__file__).resolve().parents[1]
QUICK = Limits(timeout_s=5)
SLACK_S = 1.0  # how far past its limit a killed program may be reported
X86_64_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"
# Whether this machine lets the sandbox make its namespaces (root, or unprivileged user namespaces).
NAMESPACES = (
    shutil.which("unshare") is not None and subprocess.run(["unshare", "-rnm", "true"]).returncode == 0
)
# Whether the kernel has Landlock: its ABI version, or a negative error.
LANDLOCK = (
    sys.platform == "linux"
    and ctypes.CDLL(None).syscall(
        isolation.SYS_LANDLOCK_CREATE_RULESET,
        None,
        ctypes.c_size_t(0),
        isolation.LANDLOCK_CREATE_RULESET_VERSION,
    )
    >= 1
)


def run(program: str, limits: Limits = QUICK) -> Execution:
    return run_python(textwrap.dedent(program), limits)


def test_a_good_program_passes_with_its_output_and_every_available_layer() -> None:
    result = run("print('hello'); import sys; print('warn', file=sys.stderr)")
    assert (result.status, result.returncode, result.stdout, result.stderr) == (
        "passed",
        0,
        "hello\n",
        "warn\n",
    )
    expected = {"rlimits", "no_capabilities", "no_dump", "audit_hook"}
    expected |= {"network_namespace", "readonly_mounts"} if NAMESPACES else set()
    expected |= {"landlock"} if LANDLOCK else set()
    expected |= {"seccomp"} if X86_64_LINUX else set()
    assert expected <= set(result.layers)
    assert result.status in STATUSES and result.blocked == ()


@pytest.mark.parametrize(
    "program",
    ["assert 1 + 1 == 3", "raise ValueError('no')", "def f(:\n    pass", "input()", "import numpy"],
    ids=["assert", "exception", "syntax-error", "stdin-is-empty", "stdlib-only"],
)
def test_errors_fail(program: str) -> None:
    result = run(program)
    assert (result.status, result.returncode) == ("failed", 1)


# ------------------------------------------------------------------------------------ network


def test_cannot_connect_to_a_port_that_is_listening() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        for program in (
            f"import socket; socket.create_connection(('127.0.0.1', {port})).sendall(b'escaped')",
            f"import _socket; s = _socket.socket(); s.connect(('127.0.0.1', {port}))",
        ):
            result = run(program)
            assert result.status == "blocked", result.stderr
            assert any(event.startswith("socket.") for event in result.blocked)
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()


@pytest.mark.parametrize(
    "program",
    [
        "import socket; socket.getaddrinfo('example.com', 80)",
        "import socket; socket.gethostbyname('localhost')",
        "import urllib.request; urllib.request.urlopen('http://1.1.1.1', timeout=2)",
        "import http.client; http.client.HTTPConnection('1.1.1.1', timeout=2).request('GET', '/')",
    ],
    ids=["getaddrinfo", "gethostbyname", "urlopen", "http.client"],
)
def test_cannot_resolve_names_or_reach_the_outside(program: str) -> None:
    assert run(program).status == "blocked"


def test_caught_violations_are_still_reported() -> None:
    result = run(
        """
        import socket
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=1)
        except OSError:
            pass
        """
    )
    assert (result.status, result.returncode) == ("blocked", 0)


@pytest.mark.skipif(not NAMESPACES, reason="no network namespace on this machine")
def test_the_network_namespace_has_only_a_loopback() -> None:
    result = run("print([line.split(':')[0].strip() for line in open('/proc/net/dev').readlines()[2:]])")
    assert (result.status, result.stdout) == ("passed", "['lo']\n")


# ---------------------------------------------------------------------------------- files


WRITES = {
    "open": "open(TARGET, 'w').write('x')",
    "os.open": "import os; os.write(os.open(TARGET, os.O_WRONLY | os.O_CREAT), b'x')",
    "pathlib": "import pathlib; pathlib.Path(TARGET).write_text('x')",
    "relative": "import os; open(os.path.relpath(TARGET), 'w').write('x')",
    "chdir": "import os; os.chdir(os.path.dirname(TARGET)); open(os.path.basename(TARGET), 'w').write('x')",
    "copyfile": "import shutil; open('mine.txt', 'w').write('x'); shutil.copyfile('mine.txt', TARGET)",
    "symlink": "import os; os.symlink(TARGET, 'link'); open('link', 'w').write('x')",
    "sqlite3": "import sqlite3; sqlite3.connect(TARGET).execute('create table t (x)')",
}


@pytest.mark.parametrize("where", ["test-tmp", "repo"])
@pytest.mark.parametrize("how", list(WRITES))
def test_cannot_write_outside_its_directory(how: str, where: str, tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt" if where == "test-tmp" else ROOT / f"escaped-{uuid.uuid4().hex}.txt"
    try:
        result = run(f"TARGET = {str(target)!r}\n" + WRITES[how])
        assert result.status == "blocked", result.stderr
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "action",
    [
        "os.remove(VICTIM)",
        "os.rename(VICTIM, VICTIM + '.moved')",
        "os.chmod(VICTIM, 0)",
        "os.truncate(VICTIM, 0)",
        "os.utime(VICTIM, (0, 0))",
        "os.mkdir(os.path.join(DIR, 'new'))",
        "shutil.rmtree(DIR)",
    ],
)
def test_cannot_change_files_outside_its_directory(action: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    before = victim.stat()
    result = run(f"import os, shutil\nDIR, VICTIM = {str(tmp_path)!r}, {str(victim)!r}\n{action}")
    assert result.status == "blocked", result.stderr
    after = victim.stat()
    assert victim.read_text() == "intact" and (after.st_mode, after.st_mtime_ns) == (
        before.st_mode,
        before.st_mtime_ns,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]


def test_can_use_its_own_directory() -> None:
    result = run(
        """
        import os, shutil, tempfile
        open("a.txt", "w").write("one")
        os.mkdir("d"); open("d/b.txt", "w").write("two"); os.rename("d/b.txt", "d/c.txt")
        with tempfile.NamedTemporaryFile("w", delete=False) as fh:
            fh.write("three")
        print(open("a.txt").read(), open("d/c.txt").read(), open(fh.name).read())
        shutil.rmtree("d"); os.remove(fh.name)
        print(open(os.devnull, "w").write("gone"), sorted(os.listdir(".")))
        """
    )
    assert (result.status, result.stdout) == ("passed", "one two three\n4 ['a.txt']\n")


@pytest.mark.skipif(not LANDLOCK, reason="no Landlock on this kernel")
def test_cannot_read_outside_python_and_its_directory(tmp_path: Path) -> None:
    secret = tmp_path / ".netrc"
    secret.write_text("machine example.com password hunter2")
    targets = [
        str(secret),
        str(ROOT / "README.md"),
        "/etc/hostname",
        f"/proc/{os.getpid()}/environ",
        f"/proc/{os.getpid()}/mem",
        "/proc/1/cmdline",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        pytest.__file__,  # site-packages: -S leaves it off the path, and Landlock out of reach
    ]
    result = run(
        f"""
        import os
        for path in {[t for t in targets if os.path.exists(t)]!r}:
            try:
                with open(path, "rb") as fh:
                    print("read", path, fh.read(64))
            except PermissionError:
                print("denied", path)
        print(sorted(os.listdir(".")), len(open(os.__file__).read()) > 0, open("/proc/self/status").read(5))
        """
    )
    assert result.status == "passed", result.stderr
    *lines, last = result.stdout.splitlines()
    assert lines and all(line.startswith("denied ") for line in lines), lines
    assert last == "[] True Name:"  # its own directory, the standard library and its own /proc entry


def test_the_standard_library_works() -> None:
    result = run(
        """
        import bz2, collections, datetime, decimal, fractions, hashlib, heapq, itertools, json, lzma
        import math, random, re, sqlite3, statistics, string, time, unicodedata, zlib
        db = sqlite3.connect(":memory:")
        db.execute("create table t (x)")
        print(hashlib.sha256(b"x").hexdigest()[:8], decimal.Decimal("1.1") + 1, fractions.Fraction(1, 3),
              len(bz2.compress(b"x")) > 0, len(lzma.compress(b"x")) > 0, zlib.crc32(b"x"),
              unicodedata.name("a"), time.strftime("%Z"), db.execute("select 1").fetchone())
        """
    )
    assert (result.status, result.stdout) == (
        "passed",
        "2d711642 2.1 1/3 True True 2363233923 LATIN SMALL LETTER A UTC (1,)\n",
    ), result.stderr


# ------------------------------------------------------------------------------ resources


@pytest.mark.parametrize(
    "program", ["while True: pass", "import time; time.sleep(1000)"], ids=["busy", "sleep"]
)
def test_cannot_run_past_its_time_limit(program: str) -> None:
    limits = Limits(timeout_s=1.0)
    started = time.monotonic()
    result = run(program, limits)
    assert result.status == "timeout"
    assert limits.timeout_s <= result.seconds < limits.timeout_s + SLACK_S
    assert time.monotonic() - started < limits.timeout_s + SLACK_S


@pytest.mark.parametrize(
    "program",
    [
        "x = bytearray(10 * 2**30)",
        "x = [0] * (10 * 2**30 // 8)",
        "x = []\nwhile True:\n    x.append(bytearray(2**26))",
    ],
    ids=["10GB-at-once", "10GB-list", "growing"],
)
def test_cannot_exhaust_memory(program: str) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run(program)
    assert result.status == "memory", result.stderr
    assert "MemoryError" in result.stderr
    # The test process itself allocated nothing for it (ru_maxrss is in KiB on Linux).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 100 * 1024


@pytest.mark.parametrize(
    ("program", "stream"),
    [
        ("while True: print('x' * 1000)", "stdout"),
        ("import sys\nwhile True: sys.stderr.write('y' * 1000)", "stderr"),
        ("print('z' * 10**8)", "stdout"),
    ],
    ids=["stdout-forever", "stderr-forever", "one-huge-write"],
)
def test_cannot_flood_output(program: str, stream: str) -> None:
    limits = Limits(timeout_s=10, output_bytes=4096)
    result = run(program, limits)
    assert result.status == "output_limit"
    assert len(getattr(result, stream)) == limits.output_bytes
    assert result.seconds < 2  # killed at once, not at the time limit


def test_output_below_the_limit_is_whole() -> None:
    result = run("print('a' * 5000)", Limits(output_bytes=5001))
    assert (result.status, result.stdout) == ("passed", "a" * 5000 + "\n")


@pytest.mark.parametrize(
    "program",
    [
        "import os; os.system('echo spawned')",
        "import subprocess; subprocess.run(['echo', 'spawned'])",
        "import os; os.fork()",
        "import os; os.posix_spawn('/bin/echo', ['echo', 'spawned'], {})",
        "import os; os.execv('/bin/echo', ['echo', 'spawned'])",
        "import multiprocessing as mp\nif __name__ == '__main__': mp.Process(target=print).start()",
        "import pty; pty.spawn('/bin/echo')",
        "import ctypes; ctypes.CDLL(None).fork()",
    ],
    ids=["system", "subprocess", "fork", "posix_spawn", "exec", "multiprocessing", "pty", "ctypes"],
)
def test_cannot_spawn_processes(program: str) -> None:
    result = run(program)
    assert result.status == "blocked", result.stderr
    assert "spawned" not in result.stdout


def test_threads_still_work() -> None:
    result = run(
        "import threading; t = threading.Thread(target=print, args=('in thread',)); t.start(); t.join()"
    )
    assert (result.status, result.stdout) == ("passed", "in thread\n")


# --------------------------------------------------------------------------- faking a pass


@pytest.mark.parametrize(
    "exit_early",
    [
        "import sys; sys.exit(0)",
        "import os; os._exit(0)",
        "raise SystemExit",
        "import sys, atexit; atexit.register(print, 'bye'); sys.exit()",
        "import os\nfor fd in range(3, 64):\n    try: os.write(fd, b'done\\n')\n    except OSError: pass\n"
        "os._exit(0)",
        "exit(0)",
    ],
    ids=["sys.exit", "os._exit", "SystemExit", "atexit", "forged-report", "exit-builtin"],
)
def test_cannot_fake_success_by_exiting_before_the_tests(exit_early: str) -> None:
    result = run(f"{exit_early}\nassert False, 'the tests'")
    assert result.status == "failed"


# ---------------------------------------------------------------------------- many programs

BATCH = [
    ("print(sum(range(10)))", "passed"),
    ("assert sorted([3, 1, 2]) == [1, 2, 3]", "passed"),
    ("assert 1 == 2", "failed"),
    ("while True: pass", "timeout"),
    ("import time; time.sleep(100)", "timeout"),
    ("x = bytearray(10 * 2**30)", "memory"),
    ("while True: print('spam')", "output_limit"),
    ("import socket; socket.create_connection(('1.1.1.1', 80))", "blocked"),
    ("open('/etc/passwd', 'a')", "blocked"),
    ("import os; os.system('true')", "blocked"),
    ("import sys; sys.exit(0)\nassert False", "failed"),
    ("import os; os._exit(0)", "failed"),
    ("def f(x): return x * 2\nassert f(21) == 42", "passed"),
]
BATCH_LIMITS = Limits(timeout_s=1.0, output_bytes=2048)


def _statuses(results: list[Execution]) -> list[str]:
    return [result.status for result in results]


def test_a_mixed_batch_completes_with_the_right_statuses() -> None:
    programs, expected = zip(*BATCH, strict=True)
    assert _statuses([run_python(p, BATCH_LIMITS) for p in programs]) == list(expected)


def test_a_mixed_batch_completes_in_threads() -> None:
    programs, expected = zip(*BATCH, strict=True)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: run_python(p, BATCH_LIMITS), programs))
    assert _statuses(results) == list(expected)


def test_works_from_worker_processes() -> None:
    programs = ["assert True", "assert False", "import os; os.system('true')", "print(1)"]
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(run_python, programs))
    assert _statuses(results) == ["passed", "failed", "blocked", "passed"]


# ------------------------------------------------------------------ the layers on their own

# Runs in a separate process: sets up the kernel layers exactly as the sandbox's child does, but
# installs no audit hook, then tries what the hook would have stopped.
KERNEL_PROBE = """
import ctypes, errno, json, os, resource, socket, sys, threading
from wcse.verify import isolation

parent = os.getppid()
layers = isolation.harden(sys.argv[1], 5.0, 1024, 64, 64)
outcomes = {}

def attempt(name, action):
    try:
        action()
        outcomes[name] = "allowed"
    except (OSError, ValueError) as err:
        outcomes[name] = errno.errorcode.get(getattr(err, "errno", None), type(err).__name__)

def fork():
    if os.fork() == 0:
        os._exit(0)

def unshare():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(isolation.CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare")

def thread():
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()

attempt("fork", fork)
attempt("socket", lambda: socket.socket().close())
attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
attempt("write_outside", lambda: open(sys.argv[2], "w").close())
attempt("device", lambda: os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)))
attempt("raise_memory_limit", lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1)))
attempt("unshare", unshare)
attempt("write_home", lambda: open("inside.txt", "w").close())
attempt("dev_null", lambda: open(os.devnull, "w").close())
attempt("thread", thread)
attempt("read_outside", lambda: open(sys.argv[3]).close())
attempt("read_parent_memory", lambda: open(f"/proc/{parent}/mem", "rb").close())
attempt("read_own_proc", lambda: open("/proc/self/status").close())
attempt("connect_loopback", lambda: socket.create_connection(("127.0.0.1", int(sys.argv[4])), timeout=1))
print(json.dumps({"layers": layers, "outcomes": outcomes}))
"""


def test_the_kernel_layers_hold_without_the_audit_hook(tmp_path: Path) -> None:
    home, outside, secret = tmp_path / "home", tmp_path / "outside.txt", tmp_path / "secret.txt"
    home.mkdir()
    secret.write_text("secret")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                KERNEL_PROBE,
                str(home),
                str(outside),
                str(secret),
                str(listener.getsockname()[1]),
            ],
            capture_output=True,
            text=True,
            cwd=home,
        )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    layers, outcomes = set(report["layers"]), report["outcomes"]
    assert {"rlimits", "no_capabilities", "no_dump"} <= layers
    assert outcomes["raise_memory_limit"] == "ValueError"  # no CAP_SYS_RESOURCE, even as root
    assert (
        outcomes["write_home"]
        == outcomes["dev_null"]
        == outcomes["thread"]
        == outcomes["read_own_proc"]
        == "allowed"
    )
    assert outcomes["connect_loopback"] != "allowed"
    if LANDLOCK:
        assert "landlock" in layers
        assert outcomes["read_outside"] == outcomes["read_parent_memory"] == "EACCES"
    if X86_64_LINUX:
        assert "seccomp" in layers
        assert (
            outcomes["fork"]
            == outcomes["socket"]
            == outcomes["kill_parent"]
            == outcomes["unshare"]
            == "EPERM"
        )
    if NAMESPACES:
        assert {"network_namespace", "readonly_mounts"} <= layers
        assert outcomes["write_outside"] in ("EROFS", "EACCES")  # read-only mount, or Landlock first
        if Path("/dev/kmsg").exists():
            assert outcomes["device"] == "EACCES"  # nodev: a root child could otherwise open any device
    assert not outside.exists()


# Runs run_python in a process whose seccomp filter refuses unshare (EPERM) and Landlock (ENOSYS),
# as on a machine without (unprivileged) namespaces or Landlock: the sandbox must run, and still
# block, with the remaining layers.
FALLBACK_PROBE = """
import ctypes, errno, json, sys
from wcse.verify import isolation as i, sandbox

refuse = [i.bpf(i.BPF_LD, 0), i.bpf(i.BPF_JEQ, 272, 0, 1), i.bpf(i.BPF_RET, i.SECCOMP_RET_ERRNO | errno.EPERM)]
refuse += [i.bpf(i.BPF_JEQ, i.SYS_LANDLOCK_CREATE_RULESET, 0, 1), i.bpf(i.BPF_RET, i.SECCOMP_RET_ERRNO | errno.ENOSYS)]
i.install_filter(ctypes.CDLL(None, use_errno=True), b"".join([*refuse, i.bpf(i.BPF_RET, i.SECCOMP_RET_ALLOW)]))
results = [sandbox.run_python(p, sandbox.Limits(timeout_s=2)) for p in sys.argv[2:]]
print(json.dumps([[r.status, r.layers] for r in results]))
"""


@pytest.mark.skipif(not X86_64_LINUX, reason="the probe's seccomp filter uses x86-64 syscall numbers")
def test_without_namespaces_the_other_layers_still_hold(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    programs = [
        "open('file.txt', 'w').write('x'); assert open('file.txt').read() == 'x'",
        f"open({str(target)!r}, 'w')",
        "import socket; socket.create_connection(('127.0.0.1', 9))",
        "while True: pass",
    ]
    probe = subprocess.run(
        [sys.executable, "-c", FALLBACK_PROBE, "-", *programs], capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    results = json.loads(probe.stdout)
    assert [status for status, _ in results] == ["passed", "blocked", "blocked", "timeout"]
    layers = set(results[0][1])
    assert {"rlimits", "no_capabilities", "no_dump", "seccomp", "audit_hook"} <= layers
    assert not layers & {"network_namespace", "readonly_mounts", "landlock"}
    assert not target.exists()
