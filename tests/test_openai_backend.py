"""OpenAISampler: retry classification, backoff, key handling, and records like HFSampler's.

The fast tests put the fault proxy in front of a stub upstream (``httpx.MockTransport``), so the
real openai client meets real HTTP failures without a model. The slow ones serve the shipped toy
checkpoint with vLLM on 127.0.0.1 and inject every fault between it and the sampler.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fault_proxy import DROP, HANG, FaultProxy
from tenacity import wait_none
from vllm_server import serve

from wcse.records import Sample, from_dict, to_json
from wcse.sampling.backends import request_params, sends_messages
from wcse.sampling.hf import HFSampler
from wcse.sampling.openai_backend import (
    OpenAISampler,
    SamplingError,
    api_params,
    split_by_weight,
    split_evenly,
)
from wcse.sampling.store import SampleRequest, SampleStore, ensure_samples
from wcse.toy import tokenizer, world
from wcse.toy.ladder import SHIPPED

STUB = "http://stub.invalid"  # never resolved: the proxy's transport answers instead
KEY_ENV = "WCSE_TEST_OPENAI_KEY"
# The proxy's fault names, as the sampler's retry reasons.
REASON = {"429": "http_429", "500": "http_500", HANG: "timeout", DROP: "connection"}


class StubAPI:
    """A stand-in OpenAI API (``/v1/completions`` and ``/v1/chat/completions``): answers with the
    words of the prompt (a chat's last message) reversed, one token a word, ``n`` choices (choice
    i one word shorter than choice i-1), cut at the first stop string it was sent.

    Like the real ones it can reject more than ``max_stop`` stop strings (OpenAI allows 4) and
    ignore ``n`` (``honour_n=False``: one choice, as providers without n do). Records each request
    path, body and Authorization header, and the most requests in flight at once.
    """

    def __init__(self, delay_s: float = 0.0, *, honour_n: bool = True, max_stop: int | None = None) -> None:
        self.delay_s = delay_s
        self.honour_n = honour_n
        self.max_stop = max_stop
        self.paths: list[str] = []
        self.bodies: list[dict] = []
        self.authorizations: list[str | None] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.paths.append(request.url.path)
        self.bodies.append(body)
        self.authorizations.append(request.headers.get("authorization"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        stops = body.get("stop") or []
        if self.max_stop is not None and len(stops) > self.max_stop:
            return httpx.Response(400, json={"error": {"message": f"'stop': at most {self.max_stop} sequences",
                                                       "type": "invalid_request_error", "param": "stop", "code": None}})
        chat = request.url.path.endswith("/chat/completions")
        limit = body["max_completion_tokens"] if chat else body["max_tokens"]
        words = body["messages"][-1]["content"].split() if chat else body["prompt"].split()
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"]) if chat else len(words)
        choices, generated = [], 0
        for i in range(body["n"] if self.honour_n else 1):
            out = list(reversed(words[: max(min(len(words), limit) - i, 1)]))
            cut = next((j for j, w in enumerate(out) if w in stops), None)
            finish = "stop" if cut is not None or len(out) < limit else "length"
            generated += len(out) if cut is None else cut + 1  # the stop string's token was generated
            text = " ".join(out if cut is None else out[:cut])
            content = {"message": {"role": "assistant", "content": text}} if chat else {"text": text, "logprobs": None}
            choices.append({"index": i, "finish_reason": finish, **content})
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}
        kind = "chat.completion" if chat else "text_completion"
        return httpx.Response(200, json={"id": "stub", "object": kind, "created": 0, "model": body["model"],
                                         "choices": choices, "usage": usage})


def make_requests(
    prompts: list[str], *, max_new_tokens: int = 8, model: str = "stub", samples: int = 1,
    extra: dict | None = None, messages: list[list[dict[str, str]] | None] | None = None,
) -> list[SampleRequest]:
    """``samples`` requests per prompt (problem ``p<i>``), with ``extra`` params (API mode, stop)."""
    params = {"temperature": 0.5, "top_p": 1.0, "max_new_tokens": max_new_tokens, **(extra or {})}
    return [
        SampleRequest.create(model=model, dataset="words", problem_id=f"p{i}", index=j, prompt=prompt,
                             params=params, base_seed=0, messages=messages[i] if messages else None)
        for i, prompt in enumerate(prompts)
        for j in range(samples)
    ]


def stub_sampler(proxy: FaultProxy, **kwargs: object) -> OpenAISampler:
    """A sampler on the proxy with no backoff, so the fast tests do not sleep."""
    options = {"api_key_env": KEY_ENV, "timeout_s": 5.0, "max_retries": 3, **kwargs}
    sampler = OpenAISampler("stub-model", base_url=f"{proxy.url}/v1", **options)  # type: ignore[arg-type]
    sampler.backoff = wait_none()
    return sampler


def stub_proxy(schedule: Sequence[int | str] = (), stub: StubAPI | None = None, **kwargs: object) -> FaultProxy:
    return FaultProxy(STUB, schedule, transport=httpx.MockTransport(stub or StubAPI()),  # type: ignore[arg-type]
                      retry_after_s=0, **kwargs)


# ------------------------------------------------------------------ fast: a stub behind the proxy


def test_records_come_back_in_request_order_with_the_servers_usage() -> None:
    stub = StubAPI()
    prompts = ["a b c", "d e f g h i j k l m", "n", "o p"]
    requests = make_requests(prompts, max_new_tokens=3)
    with stub_proxy(stub=stub) as proxy:
        samples = stub_sampler(proxy).generate(requests)
    assert [s.key for s in samples] == [r.key for r in requests]
    assert [s.text for s in samples] == ["c b a", "f e d", "n", "p o"]
    assert [s.generated_tokens for s in samples] == [3, 3, 1, 2]
    assert [s.prompt_tokens for s in samples] == [3, 10, 1, 2]
    assert [s.finish_reason for s in samples] == ["length", "length", "stop", "stop"]
    assert all(s.backend == "openai" and s.model == "stub" and s.seconds > 0 for s in samples)
    # What the server was asked for: the sampler's model name, each request's own seed and params.
    sent = {b["seed"]: b for b in stub.bodies}
    for r in requests:
        body = sent[r.seed]
        assert (body["model"], body["prompt"], body["n"]) == ("stub-model", r.prompt, 1)
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.5, 1.0, 3)


def test_no_more_requests_in_flight_than_the_concurrency() -> None:
    stub = StubAPI(delay_s=0.05)
    with stub_proxy(stub=stub) as proxy:
        samples = stub_sampler(proxy, concurrency=3).generate(make_requests([f"w{i}" for i in range(12)]))
    assert len(samples) == 12
    assert stub.max_in_flight == 3


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    with stub_proxy([status]) as proxy:
        sampler = stub_sampler(proxy)
        [sample] = sampler.generate(make_requests(["a b"]))
    assert sample.text == "b a"
    assert (sampler.retries, dict(sampler.retries_by_reason)) == (1, {f"http_{status}": 1})
    assert (proxy.requests, proxy.injected[str(status)]) == (2, 1)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_fail_at_once(status: int) -> None:
    with stub_proxy([status]) as proxy:
        sampler = stub_sampler(proxy)
        with pytest.raises(SamplingError, match=f"HTTP {status}, not retried"):
            sampler.generate(make_requests(["a b"]))
    assert (sampler.retries, proxy.requests) == (0, 1)


def test_hangs_and_dropped_connections_are_retried_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wcse.sampling.openai_backend")
    with stub_proxy([HANG, DROP], hang_s=30.0) as proxy:
        sampler = stub_sampler(proxy, timeout_s=0.5)
        start = time.perf_counter()
        [sample] = sampler.generate(make_requests(["a b"]))
        elapsed = time.perf_counter() - start
    assert sample.text == "b a"
    assert dict(sampler.retries_by_reason) == {"timeout": 1, "connection": 1}
    assert dict(proxy.injected) == {HANG: 1, DROP: 1}
    assert 0.5 <= elapsed < 5  # gave up on the hang after timeout_s, not after hang_s
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and "timeout" in retries[0] and "connection" in retries[1]


def test_retry_after_is_honoured() -> None:
    with FaultProxy(STUB, [429], transport=httpx.MockTransport(StubAPI()), retry_after_s=1.0) as proxy:
        sampler = stub_sampler(proxy)  # no backoff of its own: only Retry-After makes it wait
        start = time.perf_counter()
        sampler.generate(make_requests(["a"]))
    assert time.perf_counter() - start >= 1.0
    assert sampler.retries == 1


def test_gives_up_after_max_retries() -> None:
    with stub_proxy([500] * 5) as proxy:
        sampler = stub_sampler(proxy, max_retries=2)
        with pytest.raises(SamplingError, match="after 3 attempts"):
            sampler.generate(make_requests(["a"]))
    assert (sampler.retries, proxy.requests) == (2, 3)


def test_backoff_grows_exponentially_with_jitter_up_to_a_cap() -> None:
    backoff = OpenAISampler("m", base_url="http://127.0.0.1:9/v1").backoff
    for attempt, low in [(1, 0.5), (2, 1.0), (4, 4.0)]:
        waits = [backoff(SimpleNamespace(attempt_number=attempt)) for _ in range(50)]  # type: ignore[arg-type]
        assert all(low <= w <= low + 1.0 for w in waits)
        assert len(set(waits)) > 1  # jittered: concurrent retries do not arrive together
    assert 60.0 <= backoff(SimpleNamespace(attempt_number=30)) <= 61.0  # type: ignore[arg-type]


def test_the_key_comes_from_the_named_environment_variable_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-test-0123456789"
    monkeypatch.setenv(KEY_ENV, secret)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-default-variable")  # must not be used instead
    stub = StubAPI()
    with stub_proxy([429], stub=stub) as proxy:
        sampler = stub_sampler(proxy)
        sampler.generate(make_requests(["a"]))
        monkeypatch.delenv(KEY_ENV)  # unset: "EMPTY", for servers that need no key
        sampler.generate(make_requests(["b"]))
    assert stub.authorizations == [f"Bearer {secret}", "Bearer EMPTY"]
    assert secret not in repr(vars(sampler)) and secret not in caplog.text


def test_a_rejected_key_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with stub_proxy([401]) as proxy:
        with pytest.raises(SamplingError, match=rf"\${KEY_ENV} \(unset"):
            stub_sampler(proxy).generate(make_requests(["a"]))


# ------------------------------------------------------------------ fast: chat, n per request, stop strings

CHAT = api_params("chat")


def test_chat_sends_messages_and_records_the_usage() -> None:
    stub = StubAPI()
    turns = [{"role": "user", "content": "x y"}, {"role": "assistant", "content": "y x"},
             {"role": "user", "content": "a b c"}]
    plain, multi = make_requests(["a b c d", "(as text)"], extra=CHAT, messages=[None, turns])
    with stub_proxy(stub=stub) as proxy:
        samples = stub_sampler(proxy, api="chat").generate([plain, multi])
    assert stub.paths == ["/v1/chat/completions"] * 2
    sent = {b["seed"]: b for b in stub.bodies}
    for r in (plain, multi):
        body = sent[r.seed % 2**31]  # an int32 seed: Gemini's GenerationConfig.seed
        assert body["seed"] < 2**31 and "prompt" not in body and "max_tokens" not in body
        assert (body["model"], body["n"], body["max_completion_tokens"]) == ("stub-model", 1, 8)
        assert (body["temperature"], body["top_p"]) == (0.5, 1.0) and "stop" not in body
    assert sent[plain.seed % 2**31]["messages"] == [{"role": "user", "content": "a b c d"}]
    assert sent[multi.seed % 2**31]["messages"] == turns
    assert [s.text for s in samples] == ["d c b a", "c b a"]
    assert [(s.prompt_tokens, s.generated_tokens) for s in samples] == [(4, 4), (7, 3)]  # the server's usage
    assert [s.prompt for s in samples] == ["a b c d", "(as text)"] and samples[0].params["api"] == "chat"


def test_the_system_turn_comes_from_the_params_and_must_match_the_messages() -> None:
    stub = StubAPI()
    params = api_params("chat", system_prompt="Be brief.")
    with stub_proxy(stub=stub) as proxy:
        sampler = stub_sampler(proxy, api="chat", system_prompt="Be brief.")
        sampler.generate(make_requests(["a b"], extra=params))
        assert stub.bodies[0]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a b"}]
        own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "c"}]
        sampler.generate(make_requests(["c"], extra=params, messages=[own]))
        assert stub.bodies[1]["messages"] == own
        for turns in ([{"role": "user", "content": "c"}], [{"role": "system", "content": "Be long."}, own[1]]):
            with pytest.raises(ValueError, match=r"system turn is .* but params\['system'\] is 'Be brief.'"):
                sampler.generate(make_requests(["c"], extra=params, messages=[turns]))
    assert len(stub.bodies) == 2  # a bad request fails before anything is sent


def test_requests_built_for_another_api_mode_are_refused() -> None:
    with stub_proxy() as proxy:
        with pytest.raises(ValueError, match=r"request_params\(cfg.sampler\)"):
            stub_sampler(proxy, api="chat").generate(make_requests(["a"]))  # completions params
        with pytest.raises(ValueError, match="this sampler sends"):
            stub_sampler(proxy).generate(make_requests(["a"], extra=CHAT))
        with pytest.raises(ValueError, match="this sampler sends"):
            stub_sampler(proxy, api="chat", n_per_request=2).generate(make_requests(["a"], extra=CHAT))
        assert proxy.requests == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"api": "responses"}, r"sampler.api='responses'"),
        ({"api": "chat", "n_per_request": 0}, "sampler.n_per_request=0"),
        ({"api": "completions", "system_prompt": "Be brief."}, "sampler.system_prompt"),
        ({"api": "chat", "system_prompt": ""}, "sampler.system_prompt"),
    ],
)
def test_bad_api_settings_are_named(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        api_params(**kwargs)


def test_completion_keys_are_unchanged_and_api_settings_enter_the_key() -> None:
    assert api_params() == {} and api_params("completions", 1) == {}
    assert api_params("chat") == {"api": "chat"}
    assert api_params("chat", 3, "Be brief.") == {"api": "chat", "system": "Be brief.", "n": 3}
    assert api_params("completions", 3) == {"n": 3}
    keys = [make_requests(["a"], extra=extra)[0].key for extra in ({}, CHAT, api_params("chat", 3), api_params("completions", 3))]
    assert len(set(keys)) == 4
    assert keys[0] == make_requests(["a"])[0].key


def test_stop_strings_past_the_fourth_are_applied_to_the_text() -> None:
    """OpenAI rejects more than 4 stop sequences: the first 4 go to the server, all of them cut the
    text here, and the tokens generated past an unsent one are still counted (they were billed)."""
    stub = StubAPI(max_stop=4)
    stops = ["S1", "S2", "S3", "S4", "S5", "S6"]
    requests = make_requests(["a S5 b c", "a S2 b c", "a b c"], extra={**CHAT, "stop": stops})
    with stub_proxy(stub=stub) as proxy:
        samples = stub_sampler(proxy, api="chat").generate(requests)
    assert all(b["stop"] == stops[:4] for b in stub.bodies)
    texts = {s.problem_id: s for s in samples}
    assert (texts["p0"].text, texts["p0"].stop_string, texts["p0"].finish_reason) == ("c b ", "S5", "stop")
    assert texts["p0"].generated_tokens == 4  # the server ran on past S5: "c b S5 a"
    assert (texts["p1"].text, texts["p1"].generated_tokens, texts["p1"].finish_reason) == ("c b", 3, "stop")
    assert (texts["p2"].text, texts["p2"].stop_string) == ("c b a", None)
    assert all(s.params["stop"] == stops for s in samples)


def test_n_per_request_groups_a_prompts_samples_and_splits_the_usage() -> None:
    stub = StubAPI()
    params = api_params("chat", 3)
    requests = make_requests(["a b c d e f g h", "i j"], samples=4, extra=params)
    requests = requests[:4] + requests[4:6]  # 4 samples of p0, 2 of p1
    with stub_proxy(stub=stub) as proxy:
        samples = stub_sampler(proxy, api="chat", n_per_request=3).generate(requests)
    calls = sorted((b["messages"][-1]["content"], b["n"]) for b in stub.bodies)  # concurrent: in any order
    assert calls == [("a b c d e f g h", 1), ("a b c d e f g h", 3), ("i j", 2)]  # p0: 3 + 1, p1: 2
    assert [s.key for s in samples] == [r.key for r in requests]
    assert [s.text for s in samples[:3]] == ["h g f e d c b a", "g f e d c b a", "f e d c b a"]
    (first,) = [b for b in stub.bodies if b["n"] == 3]
    assert first["seed"] == requests[0].seed % 2**31  # one seed per call: its first sample's
    # The prompt is billed once per call and split evenly; completion tokens in proportion to text.
    assert [s.prompt_tokens for s in samples[:3]] == [3, 3, 2] and samples[3].prompt_tokens == 8
    assert [s.generated_tokens for s in samples[:3]] == [8, 7, 6]  # 21 billed, split 15:13:11 by characters
    assert [s.prompt_tokens for s in samples[4:]] == [1, 1]
    assert [s.generated_tokens for s in samples[4:]] == [2, 1]  # "j i" and "i": 3 billed, split 3:1 by characters
    assert all(s.params["n"] == 3 for s in samples)


def test_a_provider_that_ignores_n_is_an_error_naming_the_setting() -> None:
    with stub_proxy(stub=StubAPI(honour_n=False)) as proxy:
        with pytest.raises(SamplingError, match="got 1 choices.*sampler.n_per_request=1"):
            stub_sampler(proxy, api="chat", n_per_request=2).generate(
                make_requests(["a b"], samples=2, extra=api_params("chat", 2))
            )


def test_usage_splits_sum_to_the_bill() -> None:
    rng = random.Random(0)
    for _ in range(200):
        total, parts = rng.randint(0, 500), rng.randint(1, 8)
        weights = [rng.choice([0, rng.randint(0, 50)]) for _ in range(parts)]
        for split in (split_evenly(total, parts), split_by_weight(total, weights)):
            assert sum(split) == total and len(split) == parts and min(split) >= 0
        assert max(split_evenly(total, parts)) - min(split_evenly(total, parts)) <= 1
    assert split_by_weight(10, [1, 1, 3]) == [2, 2, 6] and split_by_weight(5, [0, 0]) == [3, 2]


def test_completions_against_a_chat_only_server_fail_fast_naming_sampler_api() -> None:
    with stub_proxy(not_found=["/v1/completions"]) as proxy:
        sampler = stub_sampler(proxy)
        with pytest.raises(SamplingError, match=r"HTTP 404, not retried.*set sampler.api=chat"):
            sampler.generate(make_requests(["a b"]))
        assert (sampler.retries, proxy.requests, dict(proxy.injected)) == (0, 1, {"not_found": 1})
        [sample] = stub_sampler(proxy, api="chat").generate(make_requests(["a b"], extra=CHAT))
    assert sample.text == "b a"


def test_chat_calls_are_retried_like_completions() -> None:
    with stub_proxy([429, DROP, 503]) as proxy:
        sampler = stub_sampler(proxy, api="chat")
        [sample] = sampler.generate(make_requests(["a b"], extra=CHAT))
    assert sample.text == "b a"
    assert dict(sampler.retries_by_reason) == {"http_429": 1, "connection": 1, "http_503": 1}


def test_a_filtered_or_empty_choice_is_recorded_as_the_provider_sent_it(caplog: pytest.LogCaptureFixture) -> None:
    async def filtered(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        reasons = ["content_filter", None]
        choices = [{"index": i, "finish_reason": reasons[i], "message": {"role": "assistant", "content": None}}
                   for i in range(body["n"])]
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                         "choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": 0,
                                                                       "total_tokens": 5}})

    with FaultProxy(STUB, transport=httpx.MockTransport(filtered)) as proxy:
        samples = stub_sampler(proxy, api="chat", n_per_request=2).generate(
            make_requests(["a"], samples=2, extra=api_params("chat", 2))
        )
    assert [(s.text, s.finish_reason, s.generated_tokens) for s in samples] == [
        ("", "content_filter", 0), ("", "stop", 0)
    ]
    assert [s.prompt_tokens for s in samples] == [3, 2]
    assert "content_filter" in caplog.text and "None" in caplog.text


def test_request_params_come_from_the_sampler_config(compose_cfg) -> None:
    cfg = compose_cfg("sampler=openai").sampler
    assert cfg.api == "chat" and request_params(cfg) == {"api": "chat"} and sends_messages(cfg)
    cfg = compose_cfg("sampler=openai", "sampler.api=completions", "sampler.n_per_request=4").sampler
    assert request_params(cfg) == {"n": 4} and not sends_messages(cfg)
    hf = compose_cfg("sampler=hf").sampler
    assert request_params(hf) == {} and not sends_messages(hf)  # raw text, whatever sampler.api says
    with pytest.raises(ValueError, match="sampler.n_per_request / sampler.system_prompt.*'hf'"):
        request_params(compose_cfg("sampler=hf", "sampler.n_per_request=2").sampler)


# ------------------------------------------------------------------ slow: vLLM serving the toy SE

TOY_SE = SHIPPED / "se"
SERVED = "toy-se"


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``.../v1`` of a vLLM server for the toy SE checkpoint (a base model: no chat template)."""
    with serve(TOY_SE, [SERVED], tmp_path_factory.mktemp("vllm") / "server.log", max_model_len=256) as url:
        yield url


def toy_requests(n_problems: int, n_samples: int, *, max_new_tokens: int = 64) -> list[SampleRequest]:
    params = {"temperature": 0.5, "top_p": 1.0, "max_new_tokens": max_new_tokens}
    return [
        SampleRequest.create(model=SERVED, dataset="toy", problem_id=p.id, index=j,
                             prompt=tokenizer.prompt(p.question), params=params, base_seed=0)
        for p in world.generate("test", n_problems, 0)
        for j in range(n_samples)
    ]


def schema(sample: Sample) -> dict[str, type]:
    return {f.name: type(getattr(sample, f.name)) for f in fields(Sample)}


@pytest.mark.slow
def test_records_match_hf_samplers(vllm_url: str) -> None:
    requests = toy_requests(4, 2)
    api = OpenAISampler(SERVED, base_url=vllm_url, concurrency=4).generate(requests)
    hf = HFSampler(str(TOY_SE), device="cpu").generate(requests)
    for a, h in zip(api, hf, strict=True):
        assert schema(a) == schema(h)
        assert from_dict(Sample, json.loads(to_json(a))) == a
        same = ("key", "model", "dataset", "problem_id", "index", "seed", "params", "prompt")
        assert {k: asdict(a)[k] for k in same} == {k: asdict(h)[k] for k in same}
        assert a.prompt_tokens == h.prompt_tokens  # one tokenizer, <s> counted by both
        assert (a.backend, h.backend) == ("openai", "hf")
        assert a.finish_reason in ("stop", "length") and 0 < a.generated_tokens <= 64
        assert a.finish_reason == "stop" or a.generated_tokens == 64


@pytest.mark.slow
def test_seeded_samples_are_reproducible(vllm_url: str) -> None:
    requests = toy_requests(4, 2)
    sampler = OpenAISampler(SERVED, base_url=vllm_url, concurrency=4)
    first, second = sampler.generate(requests), sampler.generate(requests[::-1])[::-1]
    assert [s.text for s in first] == [s.text for s in second]
    assert len({s.text for s in first}) > 1


@pytest.mark.slow
def test_ensure_samples_completes_through_every_fault(vllm_url: str, tmp_path: Path) -> None:
    requests = toy_requests(8, 2)
    timeout_s = 5.0
    with FaultProxy(vllm_url.removesuffix("/v1"), [429, 500, HANG, DROP], hang_s=timeout_s + 10) as proxy:
        sampler = OpenAISampler(SERVED, base_url=f"{proxy.url}/v1", concurrency=4, timeout_s=timeout_s)
        store = SampleStore(tmp_path / "samples")
        samples = ensure_samples(store, sampler, requests, flush_every=8)  # two generate calls
    assert [s.key for s in samples] == [r.key for r in requests]
    assert store.keys() == {r.key for r in requests}
    assert dict(proxy.injected) == {"429": 1, "500": 1, HANG: 1, DROP: 1}
    assert dict(sampler.retries_by_reason) == {REASON[fault]: n for fault, n in proxy.injected.items()}
    assert sampler.retries == 4
    assert proxy.forwarded == len(requests)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "max_new_tokens", "status"),
    [("no-such-model", 8, 404), (SERVED, 300, 400)],  # unknown model; max_tokens > max-model-len
)
def test_rejected_requests_fail_fast(vllm_url: str, model: str, max_new_tokens: int, status: int) -> None:
    sampler = OpenAISampler(model, base_url=vllm_url)
    start = time.perf_counter()
    with pytest.raises(SamplingError, match=f"HTTP {status}, not retried") as failure:
        sampler.generate(toy_requests(2, 2, max_new_tokens=max_new_tokens))
    assert time.perf_counter() - start < 10
    assert sampler.retries == 0
    assert failure.value.__cause__ is not None


@pytest.mark.slow
def test_chat_with_a_base_model_fails_fast_naming_sampler_api(vllm_url: str) -> None:
    """The toy checkpoint has no chat template, as base models often have none: vLLM rejects chat
    requests (400), and the error says to sample it with completions."""
    requests = toy_requests(1, 2, max_new_tokens=8)
    chat = [SampleRequest.create(model=r.model, dataset=r.dataset, problem_id=r.problem_id, index=r.index,
                                 prompt=r.prompt, params={**r.params, **api_params("chat")}, base_seed=0)
            for r in requests]
    sampler = OpenAISampler(SERVED, base_url=vllm_url, api="chat")
    with pytest.raises(SamplingError, match=r"chat/completions \(HTTP 400, not retried\).*set sampler.api=completions"):
        sampler.generate(chat)
    assert sampler.retries == 0
