"""Sampling from an OpenAI-compatible API: ``/v1/chat/completions`` or ``/v1/completions``.

Two kinds of server, two endpoints (``sampler.api``):

- ``chat``: the request's ``messages`` (:func:`wcse.data.prompts.messages`: the few-shot prompt
  as one user message or as one exchange per exemplar, a system turn when one is configured),
  or its ``prompt`` as one user message. Gemini's OpenAI-compatible endpoint, OpenAI's current
  models and most hosted models serve chat only, and the server applies the chat template.
- ``completions``: the raw text ``prompt``, for base models behind ``vllm serve`` or llama.cpp.

Which one made a sample is part of its params (``"api": "chat"``; completions add nothing, so
their keys are those of the hf and vLLM backends' samples, which also continue raw text).

``n`` per request (``sampler.n_per_request`` > 1, params ``"n"``): the requests of one prompt
go out ``n`` at a time as one API call, billed for the prompt once. Where a provider honours
``n`` that is cheaper, but each sample is no longer its own seeded draw: the call carries the
first request's seed, and which samples share a call depends on which were missing, so sample
j of 3 is not sample j of 30 (budgets do not nest) and a rerun does not redraw the same text.
Usage comes per call, so each sample records its share: the prompt tokens split evenly, the
completion tokens in proportion to the length of each choice's text (sums exact, so the realised
cost is what was billed; a single sample's split is an estimate). With ``n_per_request=1`` (the
default) every sample is its own request with its own seed (honoured exactly by vLLM; a best
effort at OpenAI and Gemini) and its own exact usage.

Stop strings (params ``"stop"``) go out as ``stop``, at most :data:`MAX_STOP` of them (OpenAI's
limit); all of them are applied to the returned text too (:func:`wcse.records.cut_at_stop`), so
a longer list, or a server that ignores ``stop``, still ends the text at the first one. The
tokens generated past a stop the server did not know about are still counted: they were billed.

At the scale of a sweep a hosted API fails routinely: rate limits, overloaded servers, hung or
dropped connections. So each call is retried with exponential backoff and jitter on those
transient errors only. A call the server rejects (unknown model, prompt too long, bad key, the
wrong endpoint) fails at once, with a hint naming the setting to change: repeating it cannot
help and would hide a configuration error behind minutes of backoff. The openai client's own
retries are off, so there is one retry policy, and every retry is counted
(:attr:`OpenAISampler.retries`, :attr:`OpenAISampler.retries_by_reason`) and logged at INFO.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from wcse.records import Sample, cut_at_stop
from wcse.sampling.store import SampleRequest, canonical_params

log = logging.getLogger(__name__)

APIS = ("chat", "completions")
API_KEYS = ("api", "n", "system")  # the params api_params() sets: how an API request was made
MAX_STOP = 4  # stop sequences per request: OpenAI allows 4 (Gemini 5, vLLM any)
CHAT_SEED_MODULUS = 2**31  # Gemini's seed is an int32 (GenerationConfig.seed); OpenAI and vLLM take any
# Finish reasons as recorded: "content_filter" (the provider withheld or cut the text) is neither
# an end of text nor a cut at max_new_tokens, and is kept as it is.
FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter"}
# 408 (request timeout), 409 (conflict, e.g. a lock) and 429 (rate limit) are the 4xx that say
# "try again later"; every other 4xx says the request itself is wrong.
RETRYABLE_4XX = frozenset({408, 409, 429})
RETRY_AFTER_MAX_S = 120.0  # a server asking for longer is treated as asking for this long


class SamplingError(RuntimeError):
    """A request failed for good: the server rejected it, or it still failed after every retry."""


def api_params(api: str = "completions", n_per_request: int = 1, system_prompt: str | None = None) -> dict[str, Any]:
    """What an API sample's params add to temperature, top_p and max_new_tokens: how it was asked
    for, so that it enters the key. Completions one per request add nothing (their keys stay
    those of every other backend's samples); errors name the ``sampler`` key to fix."""
    if api not in APIS:
        raise ValueError(f"sampler.api={api!r}: must be one of {list(APIS)}")
    if isinstance(n_per_request, bool) or not isinstance(n_per_request, int) or n_per_request < 1:
        raise ValueError(f"sampler.n_per_request={n_per_request!r}: must be an integer >= 1")
    if system_prompt is not None and (api != "chat" or not system_prompt):
        raise ValueError("sampler.system_prompt: a non-empty system turn, and only with sampler.api=chat")
    params: dict[str, Any] = {"api": "chat"} if api == "chat" else {}
    if system_prompt is not None:
        params["system"] = system_prompt
    if n_per_request > 1:
        params["n"] = n_per_request
    return params


def chat_messages(request: SampleRequest) -> list[dict[str, str]]:
    """The messages a chat request sends: its own, or its prompt as one user message, opened by
    the system turn its params name. A system turn the params do not name (or name differently)
    is an error: the key would not record it."""
    system = request.params.get("system")
    messages = [dict(m) for m in request.messages] if request.messages is not None else [
        {"role": "user", "content": request.prompt}
    ]
    if not messages or any(set(m) != {"role", "content"} for m in messages):
        raise ValueError(f"{request.key}: messages must be a non-empty list of {{'role', 'content'}} turns")
    opening = messages[0]["content"] if messages[0]["role"] == "system" else None
    if opening is None and system is not None and request.messages is None:
        messages.insert(0, {"role": "system", "content": system})
    elif opening != system:
        raise ValueError(
            f"{request.key}: the messages' system turn is {opening!r} but params['system'] is {system!r}; "
            "build both from sampler.system_prompt (wcse.data.prompts.messages(..., system=...))"
        )
    return messages


def calls(requests: Sequence[SampleRequest]) -> list[list[SampleRequest]]:
    """The requests as API calls: one each, or with params ``n`` up to n of one prompt per call
    (same model, prompt, messages and params), in order of first appearance."""
    groups: dict[str, list[SampleRequest]] = {}
    for r in requests:
        ident = json.dumps([r.model, r.prompt, r.messages, canonical_params(r.params)], sort_keys=True)
        groups.setdefault(ident, []).append(r)
    out = []
    for group in groups.values():
        n = int(group[0].params.get("n", 1))
        out += [group[i : i + n] for i in range(0, len(group), n)]
    return out


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers that differ by at most one and sum to it."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def split_by_weight(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` in proportion to ``weights`` (largest remainders, so the parts sum to it exactly);
    evenly when every weight is 0."""
    if not any(weights):
        return split_evenly(total, len(weights))
    exact = [total * w / sum(weights) for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


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
    """A model behind an OpenAI-compatible API, ``concurrency`` calls in flight.

    ``model`` is the name the server knows; the records keep each request's own model id, as
    :class:`~wcse.sampling.hf.HFSampler`'s do. :meth:`generate` sends each request's own params
    (they are what its key records) and refuses requests built for another API mode than this
    sampler's (:func:`api_params`: ``api``, ``n_per_request``, ``system_prompt``). The
    API key is read from the environment variable ``api_key_env`` only, when a client is made
    ("EMPTY" when it is unset, for servers that need none); it is never stored or logged.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api: str = "completions",
        n_per_request: int = 1,
        system_prompt: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
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
        self.mode = api_params(api, n_per_request, system_prompt)
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
        call that fails for good (the calls still in flight are cancelled)."""
        if not requests:
            return []
        mode = {k: self.mode.get(k) for k in API_KEYS}
        for r in requests:
            if {k: r.params.get(k) for k in API_KEYS} != mode:
                raise ValueError(
                    f"{r.key} was built for {({k: r.params.get(k) for k in API_KEYS})} but this sampler sends "
                    f"{mode}: build request params with wcse.sampling.backends.request_params(cfg.sampler)"
                )
            if r.params.get("api") == "chat":
                chat_messages(r)  # a malformed request fails before anything is sent
        by_key = {}
        for samples in asyncio.run(self._generate(calls(requests))):
            by_key.update((s.key, s) for s in samples)
        return [by_key[r.key] for r in requests]

    def _client(self) -> openai.AsyncOpenAI:
        """A client for one :meth:`generate` call (its connection pool belongs to that event loop)."""
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(self.api_key_env) or "EMPTY",
            timeout=self.timeout_s,
            max_retries=0,  # one retry policy: ours
        )

    async def _generate(self, batches: Sequence[list[SampleRequest]]) -> list[list[Sample]]:
        semaphore = asyncio.Semaphore(self.concurrency)
        async with self._client() as client:
            tasks = [asyncio.ensure_future(self._sample(client, semaphore, call)) for call in batches]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _sample(
        self, client: openai.AsyncOpenAI, semaphore: asyncio.Semaphore, call: list[SampleRequest]
    ) -> list[Sample]:
        # The slot is held through the backoff too: a rate-limited server then sees fewer
        # requests, not the same number retried.
        async with semaphore:
            retrying = AsyncRetrying(
                retry=retry_if_exception(lambda exc: retry_reason(exc) is not None),
                stop=stop_after_attempt(self.max_retries + 1),
                wait=self._wait,
                before_sleep=lambda state: self._on_retry(call[0], state),
                reraise=True,
            )
            try:
                response, seconds = await retrying(self._complete, client, call)
            except openai.APIError as err:
                raise self._failure(call[0], err) from err
        return self._to_samples(call, response, seconds)

    async def _complete(
        self, client: openai.AsyncOpenAI, call: list[SampleRequest]
    ) -> tuple[ChatCompletion | Completion, float]:
        """One attempt: the response and its own latency (backoff and failed attempts excluded)."""
        request, params = call[0], call[0].params
        stops = list(params.get("stop") or [])[:MAX_STOP]
        common: dict[str, Any] = {
            "model": self.model,
            "n": len(call),
            "temperature": float(params["temperature"]),
            "top_p": float(params["top_p"]),
            **({"stop": stops} if stops else {}),
        }
        start = time.perf_counter()
        response: ChatCompletion | Completion
        if params.get("api") == "chat":
            response = await client.chat.completions.create(
                messages=chat_messages(request),  # type: ignore[arg-type]
                seed=request.seed % CHAT_SEED_MODULUS,
                max_completion_tokens=int(params["max_new_tokens"]),
                **common,
            )
        else:
            response = await client.completions.create(
                prompt=request.prompt, seed=request.seed, max_tokens=int(params["max_new_tokens"]), **common
            )
        return response, time.perf_counter() - start

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
        """The error to raise for a call that failed for good, saying what to do about it."""
        reason = retry_reason(err)
        if reason is not None:
            return SamplingError(
                f"{self.base_url}: {request.key} still failing after {self.max_retries + 1} attempts "
                f"(last: {reason}): {err}"
            )
        status = getattr(err, "status_code", None)
        chat = request.params.get("api") == "chat"
        hint = ""
        if status in (401, 403):
            state = "set" if os.environ.get(self.api_key_env) else "unset, so 'EMPTY' was sent"
            hint = f"; check the API key in ${self.api_key_env} ({state})"
        elif status == 404 and not chat:
            hint = (
                f"; is {self.model!r} the name the server serves? If the server is chat-only (Gemini's "
                "OpenAI endpoint, OpenAI's current models, most hosted models), set sampler.api=chat"
            )
        elif status == 404:
            hint = f"; is {self.model!r} the name the server serves?"
        elif chat and "chat template" in str(err).lower():
            hint = "; the model has no chat template (a base model?): set sampler.api=completions"
        endpoint = "chat/completions" if chat else "completions"
        return SamplingError(
            f"{self.base_url} rejected {request.key} at /{endpoint} (HTTP {status}, not retried): {err}{hint}"
        )

    def _to_samples(
        self, call: list[SampleRequest], response: ChatCompletion | Completion, seconds: float
    ) -> list[Sample]:
        request = call[0]
        if response.usage is None or len(response.choices) != len(call):
            got = "no usage" if response.usage is None else f"{len(response.choices)} choices"
            hint = "; the server ignores n: set sampler.n_per_request=1" if len(call) > 1 and response.usage else ""
            raise SamplingError(f"{self.base_url}: asked for {len(call)} choices for {request.key}, got {got}{hint}")
        choices = sorted(response.choices, key=lambda c: c.index)
        texts = [self._text(c) for c in choices]
        max_new = int(request.params["max_new_tokens"])
        if response.usage.completion_tokens > max_new * len(call):
            log.warning(
                "%s: %d completion tokens for %d choice(s) of at most %d: does %s honour the token limit?",
                self.name, response.usage.completion_tokens, len(call), max_new, self.base_url,
            )
        prompt_tokens = split_evenly(int(response.usage.prompt_tokens), len(call))
        generated = split_by_weight(int(response.usage.completion_tokens), [len(t) for t in texts])
        stops = list(request.params.get("stop") or [])
        samples = []
        for r, choice, text, n_prompt, n_generated in zip(call, choices, texts, prompt_tokens, generated, strict=True):
            finish = FINISH_REASONS.get(str(choice.finish_reason))
            if finish is None or finish == "content_filter":
                log.warning(
                    "%s: %s finished with %r; recorded as %r", self.name, r.key, choice.finish_reason, finish or "stop"
                )
            text, cut_by = cut_at_stop(text, stops)
            server_stop = getattr(choice, "stop_reason", None)  # vLLM names the stop string that ended it
            samples.append(
                r.to_sample(
                    text=text,
                    prompt_tokens=n_prompt,
                    generated_tokens=n_generated,
                    finish_reason="stop" if cut_by is not None else (finish or "stop"),
                    backend=self.name,
                    seconds=seconds / len(call),
                    stop_string=cut_by if cut_by is not None else (server_stop if server_stop in stops else None),
                )
            )
        return samples

    @staticmethod
    def _text(choice: Any) -> str:
        """A choice's text: a completion's ``text`` or a chat message's ``content`` (None when a
        provider withheld it, e.g. a content filter: recorded as empty)."""
        message = getattr(choice, "message", None)
        return (message.content if message is not None else choice.text) or ""

