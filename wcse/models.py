"""Where a configured model lives, and a fingerprint of it for cache keys."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from wcse.artifacts import HASH_LIMIT_BYTES, file_sha256

TOY_PREFIX = "toy:"


def resolve(path: str, ladder: Mapping[str, Path]) -> str:
    """A loadable path: ``toy:<role>`` maps to that rung of the ladder in use; others pass through."""
    if path.startswith(TOY_PREFIX):
        role = path[len(TOY_PREFIX) :]
        if role not in ladder:
            raise ValueError(f"model {path!r}: unknown toy role; known: {sorted(ladder)}")
        folder = ladder[role]
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"model {path!r}: no checkpoint at {folder}; rebuild the ladder with "
                "`python -m wcse.main stages=[pretrain]` (or toy.pretrain=true)"
            )
        return str(folder)
    return path


def fingerprint(path: str) -> str:
    """Identity of a model for cache keys: a hash of a local folder's weights and config,
    or the hub id itself (pin a revision in the id to make it immutable). Files too large to
    hash on every run are identified by size and modification time."""
    folder = Path(path)
    if not folder.is_dir():
        return path
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("config.json")):
        stat = f.stat()
        ident = file_sha256(f) if stat.st_size <= HASH_LIMIT_BYTES else f"{stat.st_size}:{stat.st_mtime_ns}"
        h.update(f"{f.name}:{ident}".encode())
    return h.hexdigest()[:16]
