"""Run one untrusted Python program (model-written code plus its tests) in a sandboxed subprocess.

The program runs in a fresh interpreter started on this file, whose ``_child`` bootstrap sets up
the isolation layers below and then execs the program. Each layer is independent, so one that a
machine cannot provide leaves the others in force:

1. Interpreter and files: ``python -I -S`` (no environment variables, user site or site-packages:
   the standard library only, so a verdict does not depend on what else is installed) in a
   minimal environment; the working, home and temp directory is a fresh empty directory,
   removed afterwards.
2. Resources (``setrlimit``, always): address space (a huge allocation raises MemoryError), CPU
   seconds (a backstop for the wall-clock timeout), file size (a file cannot fill the disk), open
   files, no core dumps. The wall-clock timeout kills the whole process group (``start_new_session``).
3. Namespaces (when ``unshare`` works: root, or unprivileged user namespaces): an empty network
   namespace (no interface but a down loopback: nothing can be reached, whatever the code does)
   and a private mount namespace in which every mount is read-only, device-less (``nodev``, bar
   /dev/null, zero, full, random, urandom) and the writable directory is a size-capped tmpfs.
4. Capabilities (always): all dropped, so even a root child cannot raise its limits or undo 3.
5. seccomp (x86-64 Linux only; a filter needs per-architecture syscall numbers): no new processes
   (``clone`` without ``CLONE_THREAD``, ``fork``, ``execve``), no sockets, no signals to other
   processes, no mount, namespace, ptrace, module, BPF, io_uring or clock syscalls.
6. A PEP 578 audit hook (always; it cannot be removed once added): denies sockets and name
   lookups, writes outside the writable directory, links, processes, signals, ``ctypes`` and the
   ``gc`` walks that could reach the hook. Layers 3-5 enforce most of this in the kernel; the hook
   is what reports a violation (status ``"blocked"``), and the only barrier where they are missing.

A program *passes* only if it runs to its end and the interpreter exits 0: on completion the
bootstrap writes a per-run random nonce, which the program never sees in its file, argv or
environment, to a private pipe, so ``sys.exit(0)`` or ``os._exit(0)`` before the last assert is
a failure. (Code that deliberately inspects the interpreter could still find the nonce in the
bootstrap's frame; the threat model is model-written code, not an adversary who knows this file.)

``run_python`` keeps no global state and sends no signals to itself: it is safe to call from
threads and from worker processes.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import functools
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

# What happened to a program, one of:
#   passed        ran to its end and exited 0 (every assert held)
#   failed        raised (an assert, a SyntaxError...), crashed, or exited before its end
#   timeout       ran past the wall-clock (or CPU) limit and was killed
#   memory        a MemoryError escaped (an allocation over the address-space limit)
#   output_limit  wrote more than ``output_bytes`` to stdout or stderr and was killed
#   blocked       tried something the policy denies (network, writes outside its directory,
#                 processes...), even if it caught the resulting error and went on to pass
STATUSES = ("passed", "failed", "timeout", "memory", "output_limit", "blocked")


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


def run_python(program: str, limits: Limits = DEFAULT_LIMITS) -> Execution:
    """Run ``program`` as ``__main__`` under every isolation layer this machine supports."""
    nonce = os.urandom(16).hex()
    with tempfile.TemporaryDirectory(prefix="wcse-sandbox-", ignore_cleanup_errors=True) as tmp:
        tmp = os.path.realpath(tmp)
        home = os.path.join(tmp, "home")
        os.mkdir(home)
        with open(os.path.join(tmp, "program.py"), "w", encoding="utf-8") as fh:
            fh.write(program)
        status_r, status_w = os.pipe()
        argv = [sys.executable, "-I", "-S", os.path.abspath(__file__), tmp, str(status_w)]
        argv += map(str, (limits.timeout_s, limits.memory_mb, limits.disk_mb, limits.open_files))
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=home,
                env={"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"},
                pass_fds=(status_w,),
                start_new_session=True,
            )
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        return _supervise(proc, os.fdopen(status_r, "rb"), nonce, limits, started)


class _Drain(threading.Thread):
    """Read one pipe to its end, keeping the first ``limit`` bytes; past that, call ``overflow``
    (once) and discard the rest, so a flood neither blocks the child nor fills our memory."""

    def __init__(self, pipe: IO[bytes], limit: int, overflow: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.pipe, self.limit, self.overflow = pipe, limit, overflow
        self.data = bytearray()
        self.exceeded = False

    def run(self) -> None:
        with self.pipe:
            while chunk := self.pipe.read1(65536):
                room = self.limit - len(self.data)
                self.data += chunk[: max(room, 0)]
                if len(chunk) > room and not self.exceeded:
                    self.exceeded = True
                    self.overflow()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group; ``poll`` first, so a reaped pid is never signalled."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _supervise(
    proc: subprocess.Popen[bytes], status: IO[bytes], nonce: str, limits: Limits, started: float
) -> Execution:
    """Wait for the child under the limits and classify how it ended."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    kill = functools.partial(_kill, proc)
    drains = [_Drain(proc.stdout, limits.output_bytes, kill), _Drain(proc.stderr, limits.output_bytes, kill)]
    reports = _Drain(status, 65536, kill)
    for drain in (*drains, reports):
        drain.start()
    try:
        with proc.stdin:
            proc.stdin.write(nonce.encode() + b"\n")  # far below a pipe's buffer: never blocks
    except BrokenPipeError:
        pass  # the child died at start-up; its stderr says why
    timed_out = False
    try:
        proc.wait(timeout=max(limits.timeout_s - (time.monotonic() - started), 0))
    except subprocess.TimeoutExpired:
        timed_out = True
        kill()
        proc.wait()
    seconds = time.monotonic() - started
    for drain in (*drains, reports):
        drain.join(timeout=5)  # the child can have no descendants holding a pipe; this is a backstop
    messages = _messages(bytes(reports.data), nonce)
    blocked = tuple(m.removeprefix("blocked ") for m in messages if m.startswith("blocked "))
    return Execution(
        status=_status(
            proc.returncode, timed_out, any(d.exceeded for d in (*drains, reports)), blocked, messages
        ),
        returncode=proc.returncode,
        stdout=drains[0].data.decode("utf-8", "replace"),
        stderr=drains[1].data.decode("utf-8", "replace"),
        seconds=seconds,
        layers=tuple(m.removeprefix("layer ") for m in messages if m.startswith("layer ")),
        blocked=blocked,
    )


def _messages(data: bytes, nonce: str) -> list[str]:
    """The bootstrap's messages: lines that start with the nonce (the program cannot forge them)."""
    prefix = nonce + " "
    lines = data.decode("utf-8", "replace").splitlines()
    return [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]


def _status(
    returncode: int, timed_out: bool, output_exceeded: bool, blocked: tuple[str, ...], messages: list[str]
) -> str:
    """A policy violation outranks everything (it may be why the rest happened)."""
    if blocked:
        return "blocked"
    if output_exceeded:
        return "output_limit"
    # SIGXCPU / SIGKILL that we did not send: RLIMIT_CPU's soft and hard limits.
    if timed_out or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"
    if "memory" in messages:
        return "memory"
    return "passed" if returncode == 0 and "done" in messages else "failed"


# ---------------------------------------------------------------------------------------------
# The child side: runs as ``python -I -S sandbox.py TMP STATUS_FD TIMEOUT MEMORY_MB DISK_MB FILES``.

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_THREAD = 0x00020000, 0x10000000, 0x40000000, 0x00010000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (it postdates the unified table)
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 24, 38, 22, 2

# x86-64 syscall numbers (asm/unistd_64.h) the seccomp filter answers with EPERM.
X86_64_DENIED = (
    57, 58, 59, 322,  # fork vfork execve execveat
    41, 200, 424, 438,  # socket tkill pidfd_send_signal pidfd_getfd
    101, 310, 311,  # ptrace process_vm_readv process_vm_writev
    165, 166, 155, 161, 272, 308,  # mount umount2 pivot_root chroot unshare setns
    442, 428, 429, 430, 431, 432, 433,  # mount_setattr open_tree move_mount fsopen fsconfig fsmount fspick
    246, 320, 175, 313,  # kexec_load kexec_file_load init_module finit_module
    176, 169, 167, 168,  # delete_module reboot swapon swapoff
    321, 298, 304, 303, 323,  # bpf perf_event_open open_by_handle_at name_to_handle_at userfaultfd
    425, 426, 427,  # io_uring_setup io_uring_enter io_uring_register (its ops bypass seccomp)
    164, 227, 305, 159, 170, 171, 172, 173,  # clocks, host/domain names, iopl ioperm
    250, 248, 249, 163, 179,  # keyctl add_key request_key acct quotactl
)  # fmt: skip
X86_64_CLONE, X86_64_CLONE3, X86_64_KILL, X86_64_TGKILL = 56, 435, 62, 234
AUDIT_ARCH_X86_64, X32_SYSCALL_BIT = 0xC000003E, 0x40000000
BPF_LD, BPF_JEQ, BPF_JGE, BPF_JSET, BPF_RET = 0x20, 0x15, 0x35, 0x45, 0x06  # LD is BPF_LD|BPF_W|BPF_ABS
SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000


def _child() -> None:
    """Set up the layers (see the module docstring) and run ``TMP/program.py`` as ``__main__``."""
    tmp, status_fd = sys.argv[1], int(sys.argv[2])
    timeout_s, memory_mb, disk_mb, open_files = float(sys.argv[3]), *map(int, sys.argv[4:7])
    nonce = sys.stdin.readline().strip()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # input() sees end-of-file
    os.close(devnull)
    home, path = os.path.join(tmp, "home"), os.path.join(tmp, "program.py")
    write = os.write  # captured: the program could replace os.write

    def report(message: str) -> None:
        write(status_fd, f"{nonce} {message}\n".encode())

    layers = _harden(home, timeout_s, memory_mb, disk_mb, open_files)
    for layer in (*layers, "audit_hook"):
        report(f"layer {layer}")
    with open(path, encoding="utf-8") as fh:
        code = compile(fh.read(), path, "exec", dont_inherit=True)
    sys.addaudithook(_policy(home, report))
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__ = path, builtins
    sys.modules["__main__"], sys.argv = main, [path]
    try:
        exec(code, main.__dict__)
    except MemoryError:
        report("memory")
        raise
    report("done")


def _harden(home: str, timeout_s: float, memory_mb: int, disk_mb: int, open_files: int) -> list[str]:
    """Layers 2-5, in the only order that works: namespaces and mounts need the capabilities that
    are then dropped, and seccomp forbids the syscalls that set them up. The layers obtained."""
    libc = ctypes.CDLL(None, use_errno=True)
    layers = _isolate(libc, home, disk_mb)
    os.chdir(home)  # the old cwd is the directory under the new tmpfs
    cpu = int(timeout_s) + 1
    for limit, value in (
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, (disk_mb << 20,) * 2),
        (resource.RLIMIT_NOFILE, (open_files,) * 2),
        (resource.RLIMIT_AS, (memory_mb << 20,) * 2),
    ):
        resource.setrlimit(limit, value)
    layers.append("rlimits")
    for name, install in (("no_capabilities", _drop_capabilities), ("seccomp", _install_seccomp)):
        try:
            install(libc)
            layers.append(name)
        except OSError:
            pass  # not on this kernel or architecture: the other layers stand
    return layers


def _prctl(libc: ctypes.CDLL, option: int, arg2: int, arg3: int = 0) -> int:
    """prctl with every argument passed: some options insist that the unused ones be zero."""
    return libc.prctl(ctypes.c_int(option), *(ctypes.c_ulong(arg) for arg in (arg2, arg3, 0, 0)))


def _check(result: int) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _mount(
    libc: ctypes.CDLL, source: str, target: str, fstype: str | None, flags: int, data: str = ""
) -> None:
    fs = fstype.encode() if fstype else None
    _check(libc.mount(source.encode(), target.encode(), fs, ctypes.c_ulong(flags), data.encode() or None))


def _isolate(libc: ctypes.CDLL, home: str, disk_mb: int) -> list[str]:
    """Network and mount namespaces, where the kernel allows them; the layers obtained. Each step
    that may fail leaves things as they were (or harmless), so the fallback is clean."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNET | CLONE_NEWNS | (CLONE_NEWUSER if uid != 0 else 0)
    if sys.platform != "linux" or libc.unshare(ctypes.c_int(flags)) != 0:
        return []
    restrict = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID
    try:
        if uid != 0:  # map our ids to themselves in the new user namespace, or no file can be created
            for name, text in (
                ("uid_map", f"{uid} {uid} 1"),
                ("setgroups", "deny"),
                ("gid_map", f"{gid} {gid} 1"),
            ):
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text)
        _mount(libc, "none", "/", None, MS_REC | MS_PRIVATE)  # no mount event leaks out of the namespace
        _mount(
            libc, "tmpfs", home, "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_mb}m,nr_inodes=4096,mode=0700"
        )
        for device in DEVICES:
            _mount(libc, device, device, None, MS_BIND)
        _mount_setattr(libc, "/", restrict, 0, AT_RECURSIVE)
    except OSError:
        return ["network_namespace"]
    _mount_setattr(libc, home, 0, MOUNT_ATTR_RDONLY, 0)
    for device in DEVICES:  # harmless devices stay usable
        _mount_setattr(libc, device, 0, MOUNT_ATTR_NODEV, 0)
    return ["network_namespace", "readonly_mounts"]


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def _mount_setattr(libc: ctypes.CDLL, path: str, attr_set: int, attr_clr: int, flags: int) -> None:
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    _check(
        libc.syscall(
            ctypes.c_long(SYS_MOUNT_SETATTR),
            ctypes.c_int(AT_FDCWD),
            path.encode(),
            ctypes.c_uint(flags),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        )
    )


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """Empty the bounding set (an exec could not regain any) and the current sets."""
    if sys.platform != "linux":
        raise OSError("capabilities: Linux only")
    for cap in range(64):  # EINVAL past the last capability, EPERM without CAP_SETPCAP: both fine
        _prctl(libc, PR_CAPBSET_DROP, cap)
    header = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0))  # _LINUX_CAPABILITY_VERSION_3
    _check(libc.capset(header, ctypes.create_string_buffer(24)))


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    """One ``struct sock_filter``: jt / jf skip that many instructions when the test holds / fails."""
    return struct.pack("HBBI", code, jt, jf, k)


def _seccomp_filter(pid: int) -> bytes:
    """The BPF program: a deny-list for x86-64, other ABIs killed, everything else allowed.

    ``struct seccomp_data``: nr at offset 0, arch at 4, argument i at 16 + 8 i (its low half).
    """
    allow, deny = _bpf(BPF_RET, SECCOMP_RET_ALLOW), _bpf(BPF_RET, SECCOMP_RET_ERRNO | errno.EPERM)
    program = [_bpf(BPF_LD, 4), _bpf(BPF_JEQ, AUDIT_ARCH_X86_64, 1), _bpf(BPF_RET, SECCOMP_RET_KILL_PROCESS)]
    program += [_bpf(BPF_LD, 0), _bpf(BPF_JGE, X32_SYSCALL_BIT, 0, 1), deny]  # the x32 ABI
    for nr in X86_64_DENIED:
        program += [_bpf(BPF_JEQ, nr, 0, 1), deny]
    # clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes glibc use clone.
    program += [_bpf(BPF_JEQ, X86_64_CLONE3, 0, 1), _bpf(BPF_RET, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    # clone: threads only; kill / tgkill: this process only. Each block returns either way.
    program += [
        _bpf(BPF_JEQ, X86_64_CLONE, 0, 4),
        _bpf(BPF_LD, 16),
        _bpf(BPF_JSET, CLONE_THREAD, 0, 1),
        allow,
        deny,
    ]
    for nr in (X86_64_KILL, X86_64_TGKILL):
        program += [_bpf(BPF_JEQ, nr, 0, 4), _bpf(BPF_LD, 16), _bpf(BPF_JEQ, pid, 0, 1), allow, deny]
    return b"".join([*program, allow])


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_seccomp(libc: ctypes.CDLL) -> None:
    """Install the filter; OSError where its syscall numbers do not hold (all but x86-64 Linux)."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise OSError("seccomp filter: x86-64 Linux only")
    code = _seccomp_filter(os.getpid())
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.addressof(buffer))
    _check(_prctl(libc, PR_SET_NO_NEW_PRIVS, 1))
    _check(_prctl(libc, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog)))


# Audit events denied outright: processes, signals, links (a link could point a path inside the
# writable directory at a file outside it), limits, a second hook, and the gc walks that could
# reach this hook's closure.
DENIED_EVENTS = frozenset(
    {
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.startfile",
        "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
        "os.symlink", "os.link", "resource.setrlimit", "resource.prlimit", "sys.addaudithook",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "webbrowser.open",
    }
)  # fmt: skip
DENIED_PREFIXES = ("socket.", "ctypes.", "urllib.", "http.", "ftplib.", "smtplib.", "imaplib.", "poplib.")
# Events that change the file system: event -> (index of a path, index of its dir_fd or None), ...
WRITE_EVENTS = {
    "os.remove": ((0, 1),),
    "os.rmdir": ((0, 1),),
    "os.mkdir": ((0, 2),),
    "os.rename": ((0, 2), (1, 3)),
    "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),),
    "os.chflags": ((0, None),),
    "os.truncate": ((0, None),),
    "os.utime": ((0, 3),),
    "os.setxattr": ((0, None),),
    "os.removexattr": ((0, None),),
    "shutil.rmtree": ((0, 1),),
    "shutil.chown": ((0, None),),
    "sqlite3.connect": ((0, None),),
    "tempfile.mkstemp": ((0, None),),
    "tempfile.mkdtemp": ((0, None),),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _policy(root: str, report: Callable[[str], None]) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook. The program shares our builtins and modules and could patch them, so the
    hook only calls objects captured here, in its closure, before the program starts."""
    denied, prefixes, write_events = DENIED_EVENTS, DENIED_PREFIXES, dict(WRITE_EVENTS)
    devices, write_flags, cwd_fds = DEVICES, WRITE_FLAGS, (-1, AT_FDCWD)  # a dir_fd of -1: none given
    isinstance_, all_, int_, bytes_, str_ = isinstance, all, int, bytes, str
    fspath, getcwd, readlink, refuse = os.fspath, os.getcwd, os.readlink, PermissionError

    def text(path: Any) -> str:
        path = fspath(path)
        return path.decode("utf-8", "surrogateescape") if isinstance_(path, bytes_) else path

    def inside(path: Any, dir_fd: Any) -> bool:
        """Whether ``path`` lies in ``root``, judged lexically: no link into or out of it can be
        made. A bare descriptor's target is unknown, so it does not count as inside."""
        if isinstance_(path, int_):
            return False
        path = text(path)
        if not path.startswith("/"):
            base = getcwd() if dir_fd is None or dir_fd in cwd_fds else readlink(f"/proc/self/fd/{dir_fd}")
            path = base + "/" + path
        parts: list[str] = []
        for part in path.split("/"):
            if part == "..":
                parts[-1:] = []
            elif part not in ("", "."):
                parts.append(part)
        path = "/" + "/".join(parts)
        return path == root or path.startswith(root + "/") or path in devices

    def violation(event: str, args: tuple[Any, ...]) -> bool:
        if event == "open":  # builtin open: (path, mode, flags); os.open: (path, None, flags)
            path, mode, flags = args
            if isinstance_(path, int_) or not flags & write_flags:
                return False  # reading is allowed, and an open descriptor was checked when opened
            # os.open may have been given a dir_fd, which the event does not show
            return (mode is None and not text(path).startswith("/")) or not inside(path, None)
        if event in write_events:
            if event == "os.truncate" and isinstance_(args[0], int_):
                return False  # a descriptor opened for writing, so already checked
            spec = write_events[event]
            return not all_(inside(args[p], None if d is None else args[d]) for p, d in spec)
        return event in denied or event.startswith(prefixes)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if violation(event, args):
            target = args[0] if args and isinstance_(args[0], (str_, bytes_, int_)) else ""
            report(f"blocked {event} {target!r}"[:300])
            raise refuse(f"sandbox: {event} is not allowed")

    return hook


if __name__ == "__main__":
    _child()
