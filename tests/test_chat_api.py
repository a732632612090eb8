"""The chat API arm on a real server: vLLM serving SmolLM2-135M-Instruct through
``/v1/chat/completions`` on 127.0.0.1, under three served names, so one server stands for a
plain chat model and for both Gemini models of ``model_pair=gemini``.

What is checked is the plumbing, not SmolLM2's arithmetic: messages in, the server's usage
out, stop strings, seeds, ``n`` per request, a chat-only endpoint, a chat judge, and every
piece of the price-matched Gemini run (35 Flash samples per Pro sample, realised dollars,
FLOPs null). The problems are the GSM8K exemplars shipped in the prompt file (real GSM8K train
problems), so no benchmark files are needed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from omegaconf import DictConfig
from transformers import AutoTokenizer
from vllm_server import serve

from wcse import budget
from wcse.data import prompts
from wcse.records import Problem, Sample
from wcse.sampling.backends import open_sampler, request_params
from wcse.sampling.openai_backend import OpenAISampler, SamplingError, api_params, chat_messages
from wcse.sampling.store import SampleRequest, SampleStore, ensure_samples
from wcse.settings import plan_budget
from wcse.verify import judge

pytestmark = pytest.mark.slow

PROMPT = "gsm8k_8shot"
SERVED = ["smollm2", "gemini-1.5-flash", "gemini-1.5-pro"]  # one model, three names
PROBLEMS = list(prompts.template(PROMPT).exemplars)  # real GSM8K train problems, with solutions


@pytest.fixture(scope="module")
def chat_url(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # 8-shot prompts are ~900 tokens with SmolLM2's chat template; prefix caching shares them.
    log = tmp_path_factory.mktemp("vllm-chat") / "server.log"
    with serve(smollm2, SERVED, log, max_model_len=2048, kv_cache_mib=512) as url:
        yield url


@pytest.fixture(scope="module")
def tokenizer(smollm2: Path) -> AutoTokenizer:
    return AutoTokenizer.from_pretrained(smollm2)


def chat_requests(
    problems: list[Problem], samples: int, *, model: str = "smollm2", max_new_tokens: int = 64,
    api: dict | None = None, temperature: float = 0.7,
) -> list[SampleRequest]:
    """Requests as the pipeline builds them for a chat API: the prompt file's messages (its
    ``chat`` option: multi-turn exemplars for GSM8K), its version and stop strings in the params."""
    api = api_params("chat") if api is None else api
    params = {"temperature": temperature, "top_p": 1.0, "max_new_tokens": max_new_tokens,
              "prompt": prompts.template(PROMPT).version, **prompts.stop_params(PROMPT), **api}
    return [
        SampleRequest.create(
            model=model, dataset="gsm8k", problem_id=p.id, index=j, prompt=prompts.few_shot(PROMPT, p),
            messages=prompts.messages(PROMPT, p, few_shot=True, system=api.get("system")),
            params=params, base_seed=0,
        )
        for p in problems
        for j in range(samples)
    ]


def template_tokens(tokenizer: AutoTokenizer, request: SampleRequest) -> int:
    """The prompt's length as the model sees it: its messages through SmolLM2's chat template."""
    return len(tokenizer.apply_chat_template(chat_messages(request), add_generation_prompt=True, tokenize=True)["input_ids"])


def test_chat_samples_carry_the_servers_usage(chat_url: str, tokenizer: AutoTokenizer) -> None:
    requests = chat_requests(PROBLEMS[:3], 2, max_new_tokens=48)
    assert prompts.template(PROMPT).chat == "multi_turn" and len(requests[0].messages) == 15
    with FaultProxy(chat_url.removesuffix("/v1")) as proxy:
        sampler = OpenAISampler("smollm2", base_url=f"{proxy.url}/v1", api="chat", concurrency=8)
        start = time.perf_counter()
        samples = sampler.generate(requests)
        seconds = time.perf_counter() - start
    assert [s.key for s in samples] == [r.key for r in requests]
    assert {path for path, _, _ in proxy.exchanges} == {"/v1/chat/completions"}
    usage = {json.loads(sent)["seed"]: json.loads(reply)["usage"] for _, sent, reply in proxy.exchanges}
    for request, sample in zip(requests, samples, strict=True):
        billed = usage[request.seed % 2**31]
        assert (sample.prompt_tokens, sample.generated_tokens) == (billed["prompt_tokens"], billed["completion_tokens"])
        assert sample.prompt_tokens == template_tokens(tokenizer, request) > 500  # 8 shots, as the model saw them
        assert 0 < sample.generated_tokens <= 48 and sample.finish_reason in ("stop", "length")
        assert sample.finish_reason == "stop" or sample.generated_tokens == 48
        assert "\nQuestion:" not in sample.text and sample.backend == "openai" and sample.params["api"] == "chat"
    tokens = sum(s.generated_tokens for s in samples)
    print(f"\n=== SmolLM2 chat through vLLM: {len(samples)} samples, {tokens} tokens in {seconds:.1f} s "
          f"({len(samples) / seconds:.2f} samples/s, {tokens / seconds:.0f} tokens/s, concurrency 8)\n{samples[0].text}")


def test_one_user_message_and_a_system_turn_reach_the_template(chat_url: str, tokenizer: AutoTokenizer) -> None:
    """The other chat rendering (the whole few-shot text as one user message) and a system turn,
    through the config: the server's prompt count is the chat template's, system turn included."""
    api = api_params("chat", system_prompt="Solve the problem. End with '#### <answer>'.")
    turns = chat_requests(PROBLEMS[:2], 1, api=api, max_new_tokens=16)
    one = [  # no messages: the prompt goes as one user message, after the params' system turn
        SampleRequest.create(model="smollm2", dataset="gsm8k", problem_id=r.problem_id, index=1, prompt=r.prompt,
                             params=r.params, base_seed=0)
        for r in turns
    ]
    sampler = OpenAISampler("smollm2", base_url=chat_url, api="chat", system_prompt=api["system"])
    samples = sampler.generate([*one, *turns])
    for request, sample in zip([*one, *turns], samples, strict=True):
        assert chat_messages(request)[0] == {"role": "system", "content": api["system"]}
        assert sample.prompt_tokens == template_tokens(tokenizer, request)
    assert samples[0].prompt_tokens != samples[2].prompt_tokens  # one message vs one exchange per shot


def test_seeded_chat_samples_are_reproducible(chat_url: str) -> None:
    requests = chat_requests(PROBLEMS[:2], 3, max_new_tokens=24)
    sampler = OpenAISampler("smollm2", base_url=chat_url, api="chat", concurrency=6)
    first, second = sampler.generate(requests), sampler.generate(requests[::-1])[::-1]
    assert [s.text for s in first] == [s.text for s in second]
    assert len({s.text for s in first}) > 1


def test_n_per_request_is_one_call_per_prompt_billed_once(chat_url: str, tokenizer: AutoTokenizer) -> None:
    api = api_params("chat", 4)
    requests = chat_requests(PROBLEMS[:2], 4, api=api, max_new_tokens=24)
    with FaultProxy(chat_url.removesuffix("/v1")) as proxy:
        samples = OpenAISampler("smollm2", base_url=f"{proxy.url}/v1", api="chat", n_per_request=4).generate(requests)
    assert proxy.forwarded == 2
    first = {r.problem_id: r for r in requests[::-1]}
    for _, sent, reply in proxy.exchanges:  # in either order: the calls run concurrently
        body, billed = json.loads(sent), json.loads(reply)["usage"]
        [request] = [r for r in first.values() if chat_messages(r) == body["messages"]]
        call = [s for s in samples if s.problem_id == request.problem_id]
        assert body["n"] == 4 and body["seed"] == request.seed % 2**31
        assert sum(s.prompt_tokens for s in call) == billed["prompt_tokens"] == template_tokens(tokenizer, request)
        assert sum(s.generated_tokens for s in call) == billed["completion_tokens"]
        assert len({s.text for s in call}) > 1 and all(s.params["n"] == 4 for s in call)


def test_completions_against_a_chat_only_endpoint_fail_fast_naming_sampler_api(chat_url: str) -> None:
    """Gemini's OpenAI endpoint serves chat only: /v1/completions answers 404."""
    with FaultProxy(chat_url.removesuffix("/v1"), not_found=["/v1/completions"]) as proxy:
        base_url = f"{proxy.url}/v1"
        start = time.perf_counter()
        with pytest.raises(SamplingError, match=r"/completions \(HTTP 404, not retried\).*set sampler.api=chat"):
            OpenAISampler("smollm2", base_url=base_url, api="completions").generate(
                chat_requests(PROBLEMS[:1], 1, api=api_params("completions"))
            )
        assert time.perf_counter() - start < 10 and dict(proxy.injected) == {"not_found": 1}
        [sample] = OpenAISampler("smollm2", base_url=base_url, api="chat").generate(
            chat_requests(PROBLEMS[:1], 1, max_new_tokens=8)
        )
    assert sample.generated_tokens > 0


def test_a_chat_api_judge(chat_url: str, compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """SmolLM2 judging through the chat API, as a hosted judge would: messages out, verdicts
    parsed (a weak judge: its verdicts are printed, not asserted)."""
    cfg = compose_cfg("sampler=openai", f"sampler.base_url={chat_url}", "sampler.temperature=0.0",
                      "sampler.max_new_tokens=128", "sampler.concurrency=4").sampler
    problems = {p.id: p for p in PROBLEMS[:2]}
    samples = [
        SampleRequest.create(model="reference", dataset="gsm8k", problem_id=p.id, index=0, prompt="", params={}, base_seed=0)
        .to_sample(text=p.solution, prompt_tokens=0, generated_tokens=0, finish_reason="stop", backend="test", seconds=0.0)
        for p in problems.values()
    ]
    params = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens, **request_params(cfg)}
    store = SampleStore(tmp_path / "judgements")
    for prompt_id in ("steps", "answer"):
        requests = judge.judge_requests(prompt_id, "smollm2", "gsm8k", problems, samples, params, 0)
        assert all(r.messages == ({"role": "user", "content": r.prompt},) for r in requests)
        judgements = judge.judge_samples(
            lambda: open_sampler(cfg, "smollm2", batch_size=1),
            store, samples, requests,
        )
        replies = store.select([r.key for r in requests])
        assert list(judgements) == [s.key for s in samples]
        assert list(judgements.values()) == [judge.parse_judgement(r.text) for r in replies]
        assert all(r.params["api"] == "chat" and r.generated_tokens > 0 for r in replies)
        for sample, reply in zip(samples, replies, strict=True):
            print(f"\n=== {prompt_id} judge (chat API) on {sample.problem_id}: {judgements[sample.key]}\n{reply.text[-300:]}")
        # Cached: judging again sends nothing.
        again = judge.judge_samples(lambda: pytest.fail("the judge was started"), store, samples, requests)
        assert again == judgements


def test_price_matched_gemini_pieces(chat_url: str, compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """``model_pair=gemini budget=price_matched sampler=openai`` against the stand-in server: 35
    Flash samples per Pro sample through the chat API, realised dollars from the billed usage,
    FLOPs null. (The pipeline wires these same pieces.)"""
    cfg = compose_cfg("model_pair=gemini", "budget=price_matched", "sampler=openai", f"sampler.base_url={chat_url}",
                      "dataset=gsm8k", "sampler.max_new_tokens=16", "sampler.concurrency=8")
    plan = plan_budget(cfg)
    assert (plan.se_samples, plan.wc_samples, plan.mode) == (1, 35, "price")
    problem = PROBLEMS[0]
    s, pair = cfg.sampler, cfg.model_pair
    api = request_params(s)
    assert api == {"api": "chat"}
    costs = {}
    with FaultProxy(chat_url.removesuffix("/v1")) as proxy:
        s.base_url = f"{proxy.url}/v1"
        for role, n in (("wc", plan.wc_samples), ("se", plan.se_samples)):
            spec = pair[role]
            budget.check_prices(f"model_pair.{role}", price_in_per_mtok=spec.price_in_per_mtok,
                                price_out_per_mtok=spec.price_out_per_mtok, prices_date=spec.prices_date,
                                prices_source=spec.prices_source)
            requests = chat_requests([problem], n, model=f"{spec.name}@api", max_new_tokens=s.max_new_tokens, api=api)
            with open_sampler(s, spec.path, batch_size=1) as sampler:
                samples: list[Sample] = ensure_samples(SampleStore(tmp_path / role), sampler, requests)
            costs[role] = budget.realised_cost(samples, params=spec.params, price_in_per_mtok=spec.price_in_per_mtok,
                                               price_out_per_mtok=spec.price_out_per_mtok)
            prompt, generated = sum(x.prompt_tokens for x in samples), sum(x.generated_tokens for x in samples)
            assert costs[role].flops is None and costs[role].samples == n
            assert costs[role].dollars == pytest.approx(prompt * spec.price_in_per_mtok / 1e6 + generated * spec.price_out_per_mtok / 1e6)
    models = Counter(json.loads(sent)["model"] for _, sent, _ in proxy.exchanges)
    assert models == {"gemini-1.5-flash": 35, "gemini-1.5-pro": 1}  # one seeded request per sample
    billed = [json.loads(reply)["usage"] for _, _, reply in proxy.exchanges]
    assert costs["wc"].generated_tokens + costs["se"].generated_tokens == sum(u["completion_tokens"] for u in billed)
    assert costs["wc"].prompt_tokens + costs["se"].prompt_tokens == sum(u["prompt_tokens"] for u in billed)
    ratio = budget.realised_ratio(costs["wc"], costs["se"], budget.MATCHED_UNIT[plan.mode])
    assert ratio == pytest.approx(costs["wc"].dollars / costs["se"].dollars)
    assert budget.realised_ratio(costs["wc"], costs["se"], "flops") is None
    print(f"\n=== price-matched stand-in: WC {costs['wc']}, SE {costs['se']}, realised dollar ratio WC/SE {ratio:.2f}")
