"""Choose a sampling backend from the ``sampler`` config, and shard problems across jobs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from wcse.sampling.store import Sampler


@contextmanager
def open_sampler(
    cfg: Any, model: str, *, temperature: float, max_new_tokens: int, batch_size: int
) -> Iterator[Sampler]:
    """A sampler for ``model`` (a loadable path, or an API model id for ``openai``), closed on exit.

    Backends import lazily: vLLM and the OpenAI client are optional dependencies, and an
    engine holding GPU memory must be released before the next model is loaded.
    """
    if cfg.backend == "hf":
        from wcse.sampling.hf import HFSampler

        sampler: Any = HFSampler(
            model,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=cfg.top_p,
            device=cfg.device,
            dtype=cfg.dtype,
        )
    elif cfg.backend == "vllm":
        from wcse.sampling.vllm_backend import VLLMSampler

        sampler = VLLMSampler(
            model,
            temperature=temperature,
            top_p=cfg.top_p,
            max_new_tokens=max_new_tokens,
            tensor_parallel_size=cfg.tensor_parallel_size,
            max_model_len=cfg.max_model_len,
            enforce_eager=cfg.enforce_eager,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            dtype="float32" if cfg.dtype == "float32" else "auto",
            seed=cfg.seed,
        )
    elif cfg.backend == "openai":
        from wcse.sampling.openai_backend import OpenAISampler

        if not cfg.base_url:
            raise ValueError("sampler.base_url: the openai backend needs the server's URL, e.g. http://127.0.0.1:8000/v1")
        sampler = OpenAISampler(
            model,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            temperature=temperature,
            top_p=cfg.top_p,
            max_new_tokens=max_new_tokens,
            concurrency=cfg.concurrency,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
        )
    else:
        raise ValueError(f"sampler.backend={cfg.backend!r}: must be hf, vllm or openai")
    try:
        yield sampler
    finally:
        close = getattr(sampler, "close", None)
        if close is not None:
            close()


def in_shard(problem_id: str, index: int, count: int) -> bool:
    """Whether data-parallel job ``index`` of ``count`` samples this problem.

    A hash of the id, not a position: the slices stay disjoint and complete however the
    problems are ordered or filtered, and adding problems does not move existing ones.
    """
    digest = hashlib.sha1(problem_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count == index
