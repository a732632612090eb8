"""The sandbox's PEP 578 audit hook: what reports a violation (status ``blocked``), and the only
barrier where the kernel layers (:mod:`wcse.verify.isolation`) are missing.

Installed by :mod:`wcse.verify.sandbox_child` before the program runs; it cannot be removed. It
denies sockets and name lookups, writes outside the writable directory, links, processes,
signals, ``ctypes`` and the ``gc`` walks that could reach the hook.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from wcse.verify.isolation import AT_FDCWD, DEVICES

TYPE_CHECKING = False  # typing is not imported at run time: see wcse.verify.sandbox_child
if TYPE_CHECKING:
    from typing import Any

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


def policy(root: str, report: Callable[[str], None]) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook. The program shares our builtins and modules and could patch them, so the
    hook only calls objects captured here, in its closure, before the program starts."""
    denied, prefixes, write_events = DENIED_EVENTS, DENIED_PREFIXES, dict(WRITE_EVENTS)
    devices, write_flags, cwd_fds = DEVICES, WRITE_FLAGS, (-1, AT_FDCWD)  # a dir_fd of -1: none given
    isinstance_, all_, int_, bytes_, str_ = isinstance, all, int, bytes, str
    fspath, getcwd, readlink, refuse, os_error = os.fspath, os.getcwd, os.readlink, PermissionError, OSError

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
            try:
                base = (
                    getcwd() if dir_fd is None or dir_fd in cwd_fds else readlink(f"/proc/self/fd/{dir_fd}")
                )
            except os_error:
                return False  # a directory we cannot name is not known to be inside
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
