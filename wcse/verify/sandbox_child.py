"""The sandboxed child's side: set up the isolation layers, then run one program.

Started by :mod:`wcse.verify.sandbox` as ``python -I -S -c LAUNCHER CONFIG``, the launcher putting
the repository on ``sys.path`` just long enough to import this module and what it needs (the
standard library and :mod:`wcse.verify.isolation`, :mod:`~wcse.verify.audit_policy` and
:mod:`~wcse.verify.remote`, which import nothing else): once the layers are up, only the
standard library is readable. None of them imports ``typing`` at run time: it would add a
fifth to the ~50 ms of CPU that a child takes to start, and a check starts two. ``CONFIG`` is
JSON (see :func:`main`); the nonce comes on stdin, and the program on a descriptor of a file
that has no name, so no other process can read it by its path.

Roles: ``program`` runs the program as ``__main__`` and reports ``done`` if it ends
(:func:`wcse.verify.sandbox.run_python`); ``candidate`` runs it, reports ``ready`` if it ends,
then answers the judge's requests (:func:`wcse.verify.remote.serve`); ``judge`` runs it, trusted, with the candidate's
names as :class:`~wcse.verify.remote.Remote` objects, and reports ``done`` if it ends.
"""

from __future__ import annotations

import builtins
import os
import sys
import types

from wcse.verify import remote
from wcse.verify.audit_policy import policy
from wcse.verify.isolation import harden

TYPE_CHECKING = False  # typing is not imported at run time: see the module docstring
if TYPE_CHECKING:
    from typing import Any


def main(config: dict[str, Any]) -> None:
    """Run ``config['role']`` with the ``home``, ``status_fd``, ``program_fd``, ``channel``
    (the candidate's and the judge's two pipe ends) and limit keys of the config."""
    role, home, status_fd = config["role"], config["home"], config["status_fd"]
    nonce = sys.stdin.readline().strip()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # input() sees end-of-file
    os.close(devnull)
    with open(config["program_fd"], encoding="utf-8") as fh:
        source = fh.read()
    write = os.write  # captured: the program could replace os.write

    def report(message: str) -> None:
        write(status_fd, f"{nonce} {message}\n".encode())

    limits = (config[key] for key in ("timeout_s", "memory_mb", "disk_mb", "open_files"))
    layers = harden(home, *limits)
    for layer in (*layers, "audit_hook"):
        report(f"layer {layer}")
    path = os.path.join(home, f"{role}.py")  # what tracebacks call it; there is no such file
    code = compile(source, path, "exec", dont_inherit=True)
    sys.addaudithook(policy(home, report))
    if role == "judge":
        requests, replies = (
            open(fd, mode, buffering=1 << 16)
            for fd, mode in zip(config["channel"], ("wb", "rb"), strict=True)
        )
        namespace: dict[str, Any] = remote.JudgeGlobals(remote.Channel(requests, replies))
    else:
        main_module = types.ModuleType("__main__")
        main_module.__file__, main_module.__builtins__ = path, builtins
        sys.modules["__main__"] = main_module
        namespace = main_module.__dict__
    sys.argv = [path]
    try:
        exec(code, namespace)
        if role == "candidate":
            report("ready")
            requests, replies = (
                open(fd, mode) for fd, mode in zip(config["channel"], ("rb", "wb"), strict=True)
            )
            remote.serve(namespace, requests, replies)
    except MemoryError:
        report("memory")
        raise
    report("done")
