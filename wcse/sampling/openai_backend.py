"""Sampling from an OpenAI-compatible ``/v1/completions`` endpoint (``vllm serve``, hosted APIs).

API models are how the paper compares price-matched pairs (Gemini Flash vs Pro), and at the
scale of a sweep a hosted API fails routinely: rate limits, overloaded servers, hung or dropped
connections. So each request is retried with exponential backoff and jitter on those transient
errors only. A request the server rejects (unknown model, prompt too long, bad key) fails at
once: repeating it cannot help and would hide a configuration error behind minutes of backoff.

The openai client's own retries are off, so there is one retry policy, and every retry is counted
(:attr:`OpenAISampler.retries`, :attr:`OpenAISampler.retries_by_reason`) and logged at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence

import openai
from openai.types import Completion
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from wcse.records import Sample
from wcse.sampling.store import SampleRequest

log = logging.getLogger(__name__)

# 408 (request timeout), 409 (conflict, e.g. a lock) and 429 (rate limit) are the 4xx that say
# "try again later"; every other 4xx says the request itself is wrong.
RETRYABLE_4XX = frozenset({408, 409, 429})
RETRY_AFTER_MAX_S = 120.0  # a server asking for longer is treated as asking for this long


class SamplingError(RuntimeError):
    """A request failed for good: the server rejected it, or it still failed after every retry."""


def retry_reason(exc: BaseException | None) -> str | None:
    """Why ``exc`` is worth retrying ("timeout", "connection" or "http_<status>"), else None."""
    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError: test it first
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError) and (exc.status_code in RETRYABLE_4XX or exc.status_code >= 500):
        return f"http_{exc.status_code}"
    return None


def retry_after_s(exc: BaseException | None) -> float:
    """The delay the server asked for (``retry-after-ms`` or ``retry-after`` in seconds), else 0.

    An HTTP-date ``retry-after`` is ignored (0): the backoff still applies.
    """
    if not isinstance(exc, openai.APIStatusError):
        return 0.0
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return min(max(float(headers[name]) * scale, 0.0), RETRY_AFTER_MAX_S)
        except (KeyError, ValueError):
            continue
    return 0.0


class OpenAISampler:
    """A model behind an OpenAI-compatible completions API, ``concurrency`` requests in flight.

    ``model`` is the name the server knows; the records keep each request's own model id, as
    :class:`~wcse.sampling.hf.HFSampler`'s do. ``temperature``, ``top_p`` and ``max_new_tokens``
    are the defaults exposed as :attr:`params` for building requests; :meth:`generate` always
    sends each request's own params, because those are what its key records. The API key is read
    from the environment variable ``api_key_env`` only, when a client is made ("EMPTY" when it is
    unset, for servers that need none); it is never stored on the sampler or logged.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.7,
        top_p: float = 1.0,
        max_new_tokens: int = 128,
        concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 8,
    ) -> None:
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise ValueError(
                f"need concurrency >= 1, max_retries >= 0, timeout_s > 0 "
                f"(got {concurrency}, {max_retries}, {timeout_s})"
            )
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.params = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        # Wait between attempts: 0.5 s doubling up to 60 s, plus up to 1 s of jitter so that
        # requests failing together do not retry together; a server's longer Retry-After wins.
        self.backoff: wait_base = wait_exponential(multiplier=0.5, max=60.0) + wait_random(0.0, 1.0)
        self.retries = 0
        self.retries_by_reason: Counter[str] = Counter()

    def generate(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """One sample per request, in request order; raises :class:`SamplingError` on the first
        request that fails for good (the requests still in flight are cancelled)."""
        if not requests:
            return []
        return asyncio.run(self._generate(requests))

    def _client(self) -> openai.AsyncOpenAI:
        """A client for one :meth:`generate` call (its connection pool belongs to that event loop)."""
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(self.api_key_env) or "EMPTY",
            timeout=self.timeout_s,
            max_retries=0,  # one retry policy: ours
        )

    async def _generate(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        semaphore = asyncio.Semaphore(self.concurrency)
        async with self._client() as client:
            tasks = [asyncio.ensure_future(self._sample(client, semaphore, r)) for r in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _sample(
        self, client: openai.AsyncOpenAI, semaphore: asyncio.Semaphore, request: SampleRequest
    ) -> Sample:
        # The slot is held through the backoff too: a rate-limited server then sees fewer
        # requests, not the same number retried.
        async with semaphore:
            retrying = AsyncRetrying(
                retry=retry_if_exception(lambda exc: retry_reason(exc) is not None),
                stop=stop_after_attempt(self.max_retries + 1),
                wait=self._wait,
                before_sleep=lambda state: self._on_retry(request, state),
                reraise=True,
            )
            try:
                completion, seconds = await retrying(self._complete, client, request)
            except openai.APIError as err:
                raise self._failure(request, err) from err
        return self._to_sample(request, completion, seconds)

    async def _complete(self, client: openai.AsyncOpenAI, request: SampleRequest) -> tuple[Completion, float]:
        """One attempt: the completion and its own latency (backoff and failed attempts excluded)."""
        start = time.perf_counter()
        completion = await client.completions.create(
            model=self.model,
            prompt=request.prompt,
            n=1,
            seed=request.seed,
            temperature=float(request.params["temperature"]),
            top_p=float(request.params["top_p"]),
            max_tokens=int(request.params["max_new_tokens"]),
        )
        return completion, time.perf_counter() - start

    def _wait(self, state: RetryCallState) -> float:
        """Backoff with jitter, but never sooner than the server asked (Retry-After)."""
        exc = state.outcome.exception() if state.outcome else None
        return max(self.backoff(state), retry_after_s(exc))

    def _on_retry(self, request: SampleRequest, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = str(retry_reason(exc))  # never None here: only retryable errors are retried
        self.retries += 1
        self.retries_by_reason[reason] += 1
        log.info(
            "%s: %s, retry %d/%d of %s in %.1f s (%s)",
            self.name, reason, state.attempt_number, self.max_retries, request.key,
            state.next_action.sleep if state.next_action else 0.0, exc,
        )

    def _failure(self, request: SampleRequest, err: openai.APIError) -> SamplingError:
        """The error to raise for a request that failed for good, saying what to do about it."""
        reason = retry_reason(err)
        if reason is not None:
            return SamplingError(
                f"{self.base_url}: {request.key} still failing after {self.max_retries + 1} attempts "
                f"(last: {reason}): {err}"
            )
        status = getattr(err, "status_code", None)
        hint = ""
        if status in (401, 403):
            state = "set" if os.environ.get(self.api_key_env) else "unset, so 'EMPTY' was sent"
            hint = f"; check the API key in ${self.api_key_env} ({state})"
        elif status == 404:
            hint = f"; is {self.model!r} the name the server serves?"
        return SamplingError(f"{self.base_url} rejected {request.key} (HTTP {status}, not retried): {err}{hint}")

    def _to_sample(self, request: SampleRequest, completion: Completion, seconds: float) -> Sample:
        if not completion.choices or completion.usage is None:
            raise SamplingError(f"{self.base_url}: the response for {request.key} has no choices or no usage")
        choice = completion.choices[0]
        if choice.finish_reason not in ("stop", "length"):
            log.warning(
                "%s: %s finished with %r; recorded as 'stop' (not cut by max_new_tokens)",
                self.name, request.key, choice.finish_reason,
            )
        return request.to_sample(
            text=choice.text,
            prompt_tokens=int(completion.usage.prompt_tokens),
            generated_tokens=int(completion.usage.completion_tokens),
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            backend=self.name,
            seconds=seconds,
        )
