"""Where a configured model lives, how it is loaded, and a fingerprint of it for cache keys.

A configured path is a local folder, ``toy:<role>``, or a hub id, which may be pinned to a revision
as ``owner/name@revision`` (a commit hash, tag or branch). :func:`split_revision` is the one place
that reads that syntax; the loaders here and the vLLM backend pass its parts to ``from_pretrained``
and ``LLM`` as ``revision=``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.version import Version

from wcse.artifacts import HASH_LIMIT_BYTES, file_sha256

log = logging.getLogger("wcse.models")

TOY_PREFIX = "toy:"
# "name" or "owner/name" as the hub spells repo ids, then "@" and a revision (branches may hold "/").
PINNED_HUB_ID = re.compile(
    r"(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)?)@(?P<revision>[A-Za-z0-9_][A-Za-z0-9_./-]*)"
)
# The attention implementations of transformers 5 that apply a model's attn_logit_softcapping:
# eager_attention_forward and flex_attention's score_mod do; flash_attention_2 passes it to
# flash-attn (which has it from 2.6); sdpa drops it (torch's scaled_dot_product_attention has no cap).
SOFTCAP_ATTENTION = ("eager", "flash_attention_2", "flex_attention")
FLASH_ATTN_SOFTCAP = Version("2.6.0")  # the flash-attn release that added softcap


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


def split_revision(path: str) -> tuple[str, str | None]:
    """``owner/name@revision`` as ``(owner/name, revision)``; any other path as ``(path, None)``.

    Only a string shaped like a hub id is split, and never one that exists on disk: a local
    folder may have "@" in its name (``/data/gemma@v2``, ``./runs/a@b``), and transformers
    itself reads an existing folder before the hub. Absolute, ``./`` and ``~`` paths, and paths
    with more than one "/", are never hub ids.
    """
    match = PINNED_HUB_ID.fullmatch(path)
    if match is None or Path(path).expanduser().exists():
        return path, None
    return match["repo"], match["revision"]


def fingerprint(path: str) -> str:
    """Identity of a model for cache keys: a hash of a local folder's weights and config, or the
    hub id itself, with its revision: pin one (``id@<commit>``) to make the key name fixed weights,
    since an unpinned id follows whatever the hub serves. Files too large to hash on every run are
    identified by size and modification time."""
    folder = Path(path)
    if not folder.is_dir():
        return path
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("config.json")):
        stat = f.stat()
        ident = file_sha256(f) if stat.st_size <= HASH_LIMIT_BYTES else f"{stat.st_size}:{stat.st_mtime_ns}"
        h.update(f"{f.name}:{ident}".encode())
    return h.hexdigest()[:16]


def flash_attention_softcaps() -> bool:
    """Whether transformers can use flash-attn here (installed, CUDA) in a version that caps.

    transformers accepts flash-attn from 2.3.3 and passes ``softcap`` only where the installed
    function takes it, so an older flash-attn would drop Gemma2's cap as silently as sdpa.
    """
    from transformers.utils import is_flash_attn_2_available

    return is_flash_attn_2_available() and Version(importlib.metadata.version("flash_attn")) >= FLASH_ATTN_SOFTCAP


def attention_implementation(config: Any, requested: str | None, *, gpu_16bit: bool) -> str | None:
    """The attention implementation to load ``config``'s model with.

    ``requested`` wins. ``None`` is the model's safe default: for a model with attention-logit
    soft-capping (Gemma2), flash_attention_2 where it can run and caps (a GPU, 16-bit compute,
    flash-attn >= 2.6), else eager, because transformers' own default, sdpa, ignores the cap; for
    others ``None`` (transformers' default).
    """
    softcap = getattr(config.get_text_config(), "attn_logit_softcapping", None)
    if requested is not None:
        if softcap is not None and requested not in SOFTCAP_ATTENTION:
            log.warning("attn_implementation=%s ignores this model's attn_logit_softcapping=%s: its attention "
                        "is not the one it was trained with; use one of %s", requested, softcap, list(SOFTCAP_ATTENTION))
        return requested
    if softcap is None:
        return None
    return "flash_attention_2" if gpu_16bit and flash_attention_softcaps() else "eager"


def load_causal_lm(path: str, *, attn_implementation: str | None = None, gpu_16bit: bool = False, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` at the path's revision, with :func:`attention_implementation`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    repo, revision = split_revision(path)
    config = AutoConfig.from_pretrained(repo, revision=revision)
    attention = attention_implementation(config, attn_implementation, gpu_16bit=gpu_16bit)
    return AutoModelForCausalLM.from_pretrained(
        repo, revision=revision, config=config, attn_implementation=attention, **kwargs
    )


def load_tokenizer(path: str, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` at the path's revision, with a pad token (:func:`ensure_pad_token`)."""
    from transformers import AutoTokenizer

    repo, revision = split_revision(path)
    tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision, **kwargs)
    ensure_pad_token(tokenizer, path)
    return tokenizer


def ensure_pad_token(tokenizer: Any, path: str) -> None:
    """Give a tokenizer without a pad token (Llama-3 base) its EOS, else its UNK, as one, with a warning.

    Batches need some id in the padded places; which one does not matter, because the attention
    mask hides those places and their labels are ignored (``IGNORE_INDEX``), and generation stops
    at EOS before it would read one. The tokenizer saved with a finetuned model keeps the choice.
    """
    if tokenizer.pad_token is not None:
        return
    fallback = tokenizer.eos_token or tokenizer.unk_token
    if fallback is None:
        raise ValueError(f"tokenizer of {path}: it has no pad, eos or unk token to pad batches with; add a pad token")
    log.warning("tokenizer of %s has no pad token: padding with %r (%s)", path, fallback,
                "eos" if fallback == tokenizer.eos_token else "unk")
    tokenizer.pad_token = fallback
