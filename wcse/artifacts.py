"""Content-keyed artifacts: the one place that owns the cache layout, publishing and resume.

A stage's artifact lives at ``<cache>/<stage>/<key>/`` where ``key`` hashes everything the
artifact depends on (the relevant config sections and the keys of upstream artifacts). It is
built in a temporary sibling directory and published with an atomic rename, together with a
``manifest.json`` listing every file's size and SHA-256: a crash never leaves a half-built
artifact behind, and a damaged one (a truncated file, a byte flipped on disk) fails
validation and is rebuilt instead of being used. A file lock per key keeps concurrent sweep
jobs from building the same artifact twice; a job waiting for it reports who holds it and
gives up after ``lock_timeout_s`` (:class:`wcse.locks.HeldLock`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wcse.errors import WcseError
from wcse.locks import HeldLock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# Hashing every byte of a 50 GB checkpoint on each load would dominate a run; above this size
# a file is checked by its size only.
HASH_LIMIT_BYTES = 256 * 2**20


class MissingArtifact(WcseError, RuntimeError):
    """An upstream artifact is absent and its stage was not selected to build it."""


def digest(payload: Any) -> str:
    """A short, stable key for a JSON-able payload (order of dict keys does not matter)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    return {"size": size, "sha256": file_sha256(path) if size <= HASH_LIMIT_BYTES else None}


class Cache:
    """The artifact store under ``root``; ``allowed`` names the stages this run may build;
    ``lock_timeout_s`` bounds the wait for another process's lock (None: no bound)."""

    def __init__(self, root: Path | str, allowed: set[str] | None = None, lock_timeout_s: float | None = None) -> None:
        self.root = Path(root).expanduser()
        self.allowed = allowed
        self.lock_timeout_s = lock_timeout_s
        self.events: list[dict[str, Any]] = []  # what was built or reused, for the summary

    def path(self, stage: str, payload: Mapping[str, Any]) -> Path:
        return self.root / stage / digest(payload)

    def valid(self, path: Path) -> bool:
        """True when ``path`` holds a complete artifact whose files match its manifest."""
        manifest = path / MANIFEST
        if not manifest.is_file():
            return False
        try:
            files = json.loads(manifest.read_text())["files"]
            for name, expected in files.items():
                if not (path / name).is_file() or _fingerprint(path / name) != expected:
                    log.warning("artifact %s: %s does not match its manifest; rebuilding", path, name)
                    return False
        except (ValueError, KeyError, TypeError):
            log.warning("artifact %s: unreadable manifest; rebuilding", path)
            return False
        return True

    def get_or_build(
        self,
        stage: str,
        payload: Mapping[str, Any],
        build: Callable[[Path], None],
        *,
        label: str = "",
        resumable: bool = False,
    ) -> Path:
        """Return the artifact for ``payload``, building it with ``build(tmp_dir)`` if needed.

        A ``resumable`` build (training) runs in a fixed ``.partial-<key>`` folder that is kept
        when it fails or is killed, so the next build of the same key finds its checkpoints and
        goes on from there; other builds start from an empty folder every time.
        """
        path = self.path(stage, payload)
        what = f"{stage}{f' [{label}]' if label else ''}"
        if self.valid(path):
            log.info("%s: cached at %s", what, path)
            self.events.append({"stage": stage, "label": label, "path": str(path), "cached": True})
            return path
        if self.allowed is not None and stage not in self.allowed:
            raise MissingArtifact(
                f"{what}: no cached artifact at {path} and stage '{stage}' is not in `stages`; "
                f"add it, e.g. stages=[{stage},...]"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with HeldLock(str(path) + ".lock", timeout_s=self.lock_timeout_s):
            if self.valid(path):  # another job built it while we waited for the lock
                self.events.append({"stage": stage, "label": label, "path": str(path), "cached": True})
                return path
            start = time.perf_counter()
            if resumable:
                tmp = path.parent / f".partial-{path.name}"
                if tmp.exists():
                    log.info("%s: resuming the interrupted build in %s", what, tmp)
            else:
                tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(exist_ok=resumable)
            try:
                log.info("%s: building -> %s", what, path)
                build(tmp)
                files = {
                    str(f.relative_to(tmp)): _fingerprint(f) for f in sorted(tmp.rglob("*")) if f.is_file()
                }
                seconds = round(time.perf_counter() - start, 2)
                manifest = {"stage": stage, "payload": payload, "files": files, "seconds": seconds}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
                if path.exists():  # a damaged earlier build
                    shutil.rmtree(path)
                tmp.rename(path)
            except BaseException:
                if not resumable:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
        log.info("%s: built in %.1fs", what, seconds)
        self.events.append({"stage": stage, "label": label, "path": str(path), "cached": False, "seconds": seconds})
        return path
