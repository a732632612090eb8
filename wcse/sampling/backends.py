"""Choose a sampling backend from the ``sampler`` config, and shard problems across jobs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from wcse.sampling.store import Sampler


def _hf(cfg: Any, model: str, batch_size: int, attn_implementation: str | None) -> Sampler:
    from wcse.sampling.hf import HFSampler

    return HFSampler(model, batch_size=batch_size, device=cfg.device, dtype=cfg.dtype, attn_implementation=attn_implementation)


def _vllm(cfg: Any, model: str, batch_size: int, attn_implementation: str | None) -> Sampler:
    from wcse.sampling.vllm_backend import VLLMSampler  # vLLM applies Gemma2's soft-capping itself

    return VLLMSampler(
        model,
        tensor_parallel_size=cfg.tensor_parallel_size,
        max_model_len=cfg.max_model_len,
        enforce_eager=cfg.enforce_eager,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        dtype="float32" if cfg.dtype == "float32" else "auto",
        seed=cfg.seed,
    )


def _openai(cfg: Any, model: str, batch_size: int, attn_implementation: str | None) -> Sampler:
    from wcse.sampling.openai_backend import OpenAISampler

    if not cfg.base_url:
        raise ValueError("sampler.base_url: the openai backend needs the server's URL, e.g. http://127.0.0.1:8000/v1")
    return OpenAISampler(
        model,
        base_url=cfg.base_url,
        api=cfg.api,
        n_per_request=cfg.n_per_request,
        system_prompt=cfg.system_prompt,
        api_key_env=cfg.api_key_env,
        concurrency=cfg.concurrency,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
    )


BACKENDS = {"hf": _hf, "vllm": _vllm, "openai": _openai}  # sampler.backend -> how to open it


@contextmanager
def open_sampler(cfg: Any, model: str, *, batch_size: int, attn_implementation: str | None = None) -> Iterator[Sampler]:
    """A sampler for ``model`` (a loadable path, or an API model id for ``openai``), closed on exit.

    Decoding parameters are not an argument: every request carries its own (they are in its
    key), and the backends read them from there. Backends import lazily: vLLM and the OpenAI
    client are optional dependencies, and an engine holding GPU memory must be released before
    the next model is loaded.
    """
    if cfg.backend not in BACKENDS:
        raise ValueError(f"sampler.backend={cfg.backend!r}: must be one of {list(BACKENDS)}")
    sampler = BACKENDS[cfg.backend](cfg, model, batch_size, attn_implementation)
    try:
        yield sampler
    finally:
        close = getattr(sampler, "close", None)
        if close is not None:
            close()


def request_params(cfg: Any) -> dict[str, Any]:
    """What the ``sampler`` config adds to every request's params beyond temperature, top_p,
    max_new_tokens (and the prompt's version and stop strings): for the openai backend, the API
    mode (:func:`wcse.sampling.openai_backend.api_params`: chat or completions, ``n`` per
    request, the system turn), which decides what a sample is and so enters its key. The hf and
    vLLM backends continue raw text one sample at a time and add nothing; the API-only keys are
    errors there rather than silently ignored.
    """
    if cfg.backend == "openai":
        from wcse.sampling.openai_backend import api_params

        return api_params(cfg.api, cfg.n_per_request, cfg.system_prompt)
    if cfg.n_per_request != 1 or cfg.system_prompt is not None:
        raise ValueError(
            f"sampler.n_per_request / sampler.system_prompt: API settings, but sampler.backend={cfg.backend!r} "
            "samples raw text one request at a time (use sampler=openai)"
        )
    return {}


def sends_messages(cfg: Any) -> bool:
    """Whether this ``sampler`` sends chat messages (the server applies the chat template), so a
    caller must not render one itself (e.g. the judge's ``ChatTemplate``)."""
    return cfg.backend == "openai" and cfg.api == "chat"


def in_shard(problem_id: str, index: int, count: int) -> bool:
    """Whether data-parallel job ``index`` of ``count`` samples this problem.

    A hash of the id, not a position: the slices stay disjoint and complete however the
    problems are ordered or filtered, and adding problems does not move existing ones.
    """
    digest = hashlib.sha1(problem_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index
