"""The kernel side of the sandbox: what a sandboxed child does to itself before it runs any code.

Used by :mod:`wcse.verify.sandbox_child` (never by the parent process). Each layer is independent,
so one that a machine cannot provide leaves the others in force; :func:`harden` returns the
names of those it obtained. They are set up in the only order that works: namespaces and mounts
need the capabilities that are then dropped, and seccomp forbids the syscalls of the others.

- ``network_namespace``, ``readonly_mounts``: an empty network namespace (a down loopback and
  nothing else) and a private mount namespace in which every mount is read-only and device-less
  (bar /dev/null, zero, full, random, urandom) and the writable directory is a size-capped tmpfs;
  when ``unshare`` works (root, or unprivileged user namespaces).
- ``rlimits``: address space, CPU seconds, file size, open files, no core dumps.
- ``no_capabilities``: all dropped, bounding set included.
- ``no_dump``: the process is not dumpable, so no other process of the user can read its memory
  or descriptors through /proc (the test runner's expected values, its report pipe).
- ``landlock`` (Linux 5.13+ with Landlock enabled): files may be read only in the standard
  library (``sys.path``, less ``site-packages``), the system library directories (for the
  shared libraries of extension modules), ``/etc/ld.so.cache``, this process's own ``/proc``
  entry, the harmless devices and the writable directory; written only in the last two. Where
  the kernel supports them, TCP bind/connect, signals to processes outside the sandbox and
  abstract Unix sockets are refused too, and, as for any Landlock domain, ptrace and /proc
  access to processes outside it.
- ``seccomp`` (x86-64 only: a filter needs per-architecture syscall numbers): no new processes,
  sockets, signals to other processes, mounts, namespaces, ptrace, modules, BPF, io_uring, clocks.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import struct
import sys

TYPE_CHECKING = False  # typing is not imported at run time: see wcse.verify.sandbox_child
if TYPE_CHECKING:
    from typing import Any

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_THREAD = 0x00020000, 0x10000000, 0x40000000, 0x00010000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (it postdates the unified table)
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
PR_CAPBSET_DROP, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 24, 4, 38, 22, 2

# Landlock (linux/landlock.h); its syscalls, too, have the same numbers on every architecture.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION, LANDLOCK_RULE_PATH_BENEATH = 1, 1
FS_READ_FILE, FS_READ_DIR, FS_WRITE_FILE, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 2, 1 << 3, 1 << 1, 1 << 14, 1 << 15
FS_FILE_RIGHTS = (1 << 0) | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV  # valid on a file
# The file-system rights each ABI version knows (1: bits 0-12; 2: REFER; 3: TRUNCATE; 5: IOCTL_DEV).
FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
SYSTEM_LIBRARY_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache")

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


def harden(home: str, timeout_s: float, memory_mb: int, disk_mb: int, open_files: int) -> list[str]:
    """Every layer this machine supports, with ``home`` the only writable directory. The layers
    obtained (see the module docstring)."""
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
    for name, install in (
        ("no_capabilities", _drop_capabilities),
        ("no_dump", _no_dump),
        ("landlock", lambda libc: _install_landlock(libc, home)),
        ("seccomp", _install_seccomp),
    ):
        try:
            install(libc)
            layers.append(name)
        except OSError:
            pass  # not on this kernel or architecture: the other layers stand
    return layers


def prctl(libc: ctypes.CDLL, option: int, arg2: int, arg3: int = 0) -> int:
    """prctl with every argument passed: some options insist that the unused ones be zero."""
    return libc.prctl(ctypes.c_int(option), *(ctypes.c_ulong(arg) for arg in (arg2, arg3, 0, 0)))


def _check(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


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
        prctl(libc, PR_CAPBSET_DROP, cap)
    header = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0))  # _LINUX_CAPABILITY_VERSION_3
    _check(libc.capset(header, ctypes.create_string_buffer(24)))


def _no_dump(libc: ctypes.CDLL) -> None:
    if sys.platform != "linux":
        raise OSError("PR_SET_DUMPABLE: Linux only")
    _check(prctl(libc, PR_SET_DUMPABLE, 0))


def _landlock(libc: ctypes.CDLL, nr: int, *args: Any) -> int:
    return _check(libc.syscall(ctypes.c_long(nr), *args))


def readable_paths() -> list[str]:
    """What a sandboxed program may read besides its own directory: the interpreter's module
    directories (the standard library without the installed packages, which ``-S`` leaves out)
    and the system library directories, those that exist."""
    paths = []
    for path in (*sys.path, *SYSTEM_LIBRARY_DIRS):
        if os.path.isdir(os.path.join(path, "site-packages")):
            paths += [entry.path for entry in os.scandir(path) if entry.name != "site-packages"]
        elif os.path.exists(path):
            paths.append(path)
    return paths


def _install_landlock(libc: ctypes.CDLL, home: str) -> None:
    """Restrict file access to :func:`readable_paths` (read) and ``home`` (everything); OSError
    where the kernel has no Landlock."""
    if sys.platform != "linux":
        raise OSError("Landlock: Linux only")
    abi = _landlock(
        libc, SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION
    )
    fs_rights = FS_RIGHTS_BY_ABI[max(v for v in FS_RIGHTS_BY_ABI if v <= abi)]
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("QQQ", fs_rights, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    ruleset = _landlock(libc, SYS_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(len(attr)), 0)
    try:
        read = FS_READ_FILE | FS_READ_DIR
        device = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV
        rules = [(path, read) for path in readable_paths()]
        rules += [(f"/proc/{os.getpid()}", read), (home, fs_rights), *((d, device) for d in DEVICES)]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a device this machine lacks
            try:
                is_dir = os.path.isdir(path)
                beneath = struct.pack("=Qi", rights & fs_rights & (~0 if is_dir else FS_FILE_RIGHTS), fd)
                _landlock(libc, SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, beneath, 0)
            finally:
                os.close(fd)
        _check(prctl(libc, PR_SET_NO_NEW_PRIVS, 1))  # what lets an unprivileged process restrict itself
        _landlock(libc, SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)


def bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    """One ``struct sock_filter``: jt / jf skip that many instructions when the test holds / fails."""
    return struct.pack("HBBI", code, jt, jf, k)


def _seccomp_filter(pid: int) -> bytes:
    """The BPF program: a deny-list for x86-64, other ABIs killed, everything else allowed.

    ``struct seccomp_data``: nr at offset 0, arch at 4, argument i at 16 + 8 i (its low half).
    """
    allow, deny = bpf(BPF_RET, SECCOMP_RET_ALLOW), bpf(BPF_RET, SECCOMP_RET_ERRNO | errno.EPERM)
    program = [bpf(BPF_LD, 4), bpf(BPF_JEQ, AUDIT_ARCH_X86_64, 1), bpf(BPF_RET, SECCOMP_RET_KILL_PROCESS)]
    program += [bpf(BPF_LD, 0), bpf(BPF_JGE, X32_SYSCALL_BIT, 0, 1), deny]  # the x32 ABI
    for nr in X86_64_DENIED:
        program += [bpf(BPF_JEQ, nr, 0, 1), deny]
    # clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes glibc use clone.
    program += [bpf(BPF_JEQ, X86_64_CLONE3, 0, 1), bpf(BPF_RET, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    # clone: threads only; kill / tgkill: this process only. Each block returns either way.
    program += [
        bpf(BPF_JEQ, X86_64_CLONE, 0, 4),
        bpf(BPF_LD, 16),
        bpf(BPF_JSET, CLONE_THREAD, 0, 1),
        allow,
        deny,
    ]
    for nr in (X86_64_KILL, X86_64_TGKILL):
        program += [bpf(BPF_JEQ, nr, 0, 4), bpf(BPF_LD, 16), bpf(BPF_JEQ, pid, 0, 1), allow, deny]
    return b"".join([*program, allow])


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_filter(libc: ctypes.CDLL, code: bytes) -> None:
    """Install a seccomp BPF program (``bpf`` instructions) on this process."""
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(len(code) // 8, ctypes.addressof(buffer))
    _check(prctl(libc, PR_SET_NO_NEW_PRIVS, 1))
    _check(prctl(libc, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog)))


def _install_seccomp(libc: ctypes.CDLL) -> None:
    """The filter; OSError where its syscall numbers do not hold (all but x86-64 Linux)."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise OSError("seccomp filter: x86-64 Linux only")
    install_filter(libc, _seccomp_filter(os.getpid()))
