"""A file lock that never waits in silence: who holds it, since when, and a limit on the wait.

The cache's per-artifact locks and the sample store's lock are held for as long as a build or a
write lasts (a training can take hours), so a waiter cannot tell a busy peer from a stuck one by
the wait alone. The holder therefore writes ``<lock>.holder`` (pid, host, command, since when,
the lock file's inode) beside the lock; a waiter logs it every ``report_every_s`` and gives up
after ``timeout_s`` with :class:`~wcse.errors.LockTimeout` naming it.

The lock itself is :class:`filelock.FileLock` (``flock``), which the kernel releases when its
holder dies. It can outlive the recorded holder only when another process inherited the locked
descriptor (a child started with it): then the record names a pid that is gone from this host,
and the waiter takes the lock over by unlinking the lock file, so the next acquisition gets a
fresh inode. A take-over and the holder's record are both made under a short ``<lock>.guard``
lock, and a new holder keeps the lock only if the path still names the inode it locked, so a
lock is never taken from a holder that is alive. A holder on another host cannot be probed:
its lock is waited for (and reported) like a live one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from wcse.errors import LockTimeout

log = logging.getLogger(__name__)

REPORT_EVERY_S = 30.0
GUARD_TIMEOUT_S = 60.0  # the guard is held for a stat and a small write


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def describe(holder: dict[str, Any] | None) -> str:
    """The holder in words, for a log line or an error."""
    if holder is None:
        return "an unknown process (no holder record: a process of an older wcse, or one that just took it)"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} ({holder.get('command')})"


class HeldLock:
    """``with HeldLock(path, timeout_s=...)``: an exclusive lock on ``path`` across processes.

    ``timeout_s=None`` waits for as long as it takes, still reporting the holder. One object is
    re-entrant (the sample store takes its lock again while repairing a shard under it); use one
    object per thread.
    """

    def __init__(self, path: Path | str, *, timeout_s: float | None, report_every_s: float = REPORT_EVERY_S) -> None:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"lock timeout {timeout_s} must be > 0 (or None: no limit)")
        self.path = Path(path)
        self.holder_path = self.path.with_name(self.path.name + ".holder")
        self.timeout_s, self.report_every_s = timeout_s, report_every_s
        self._inode: tuple[int, int] | None = None
        self._lock = FileLock(self.path, on_acquired=self._locked)
        self._guard = FileLock(self.path.with_name(self.path.name + ".guard"))
        self._depth = 0

    def _locked(self, fd: int) -> None:
        st = os.fstat(fd)
        self._inode = (st.st_dev, st.st_ino)

    def holder(self) -> dict[str, Any] | None:
        """The recorded holder, or None when there is no (readable) record."""
        try:
            record = json.loads(self.holder_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _path_inode(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def _gone(self, holder: dict[str, Any] | None) -> bool:
        return (
            holder is not None
            and holder.get("host") == socket.gethostname()
            and isinstance(holder.get("pid"), int)
            and not _alive(holder["pid"])
        )

    def _take_over(self, seen: dict[str, Any]) -> None:
        """Unlink the lock file of a holder that is gone, if it is still that holder's file."""
        with self._guard.acquire(timeout=GUARD_TIMEOUT_S):
            holder = self.holder()
            if holder != seen or list(self._path_inode() or ()) != seen.get("inode"):
                return  # it changed hands meanwhile; the next attempt sees the new holder
            self.path.unlink(missing_ok=True)
            self.holder_path.unlink(missing_ok=True)
        log.warning("lock %s: took it over from %s, which is no longer running", self.path, describe(seen))

    def _claim(self) -> bool:
        """After the flock: keep it only if the path still names the locked inode (not taken over)."""
        with self._guard.acquire(timeout=GUARD_TIMEOUT_S):
            if self._inode is None or self._path_inode() != self._inode:
                return False
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": " ".join(sys.argv)[:300],
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
                "inode": list(self._inode),
            }
            tmp = self.holder_path.with_name(f"{self.holder_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, self.holder_path)
            return True

    def acquire(self) -> None:
        if self._depth:
            self._depth += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        while True:
            waited = time.monotonic() - start
            left = None if self.timeout_s is None else self.timeout_s - waited
            if left is not None and left <= 0:
                holder = self.holder()
                raise LockTimeout(
                    f"lock {self.path}: still held after {self.timeout_s:g} s by {describe(holder)}; "
                    "if that process is stuck, stop it (its lock is then released), or wait longer "
                    "with paths.lock_timeout_s"
                )
            try:
                self._lock.acquire(timeout=self.report_every_s if left is None else min(self.report_every_s, left))
            except Timeout:
                holder = self.holder()
                if self._gone(holder):
                    self._take_over(holder)
                    continue
                log.warning(
                    "waiting %.0f s for lock %s, held by %s%s", time.monotonic() - start, self.path, describe(holder),
                    "" if self.timeout_s is None else f"; giving up after {self.timeout_s:g} s (paths.lock_timeout_s)",
                )
                continue
            if self._claim():
                self._depth = 1
                return
            self._lock.release()  # taken over while we were getting it: try again on the new file

    def release(self) -> None:
        self._depth -= 1
        if self._depth:
            return
        self.holder_path.unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> HeldLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
