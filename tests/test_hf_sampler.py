"""HFSampler: per-(prompt, seed) determinism, greedy at T=0, token accounting, and an exact sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from wcse.sampling.hf import GumbelSampler, HFSampler
from wcse.sampling.store import SampleRequest

WORDS = "one two three four five six seven eight nine ten plus minus is".split()
PROMPTS = [
    "one",
    "two plus three is",
    "ten minus four plus one is",
    "five",
    "nine minus nine plus eight minus two plus six is",
    "seven seven",
]


def save_tiny_model(path: Path) -> Path:
    """A random 2-layer Llama and a word-level tokenizer, saved like a hub checkpoint (no download)."""
    vocab = {word: i for i, word in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        padding_side="left",
    )
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=128,
        pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_requests(
    prompts: list[str], *, indices: range = range(1), temperature: float = 1.0, top_p: float = 1.0,
    max_new_tokens: int = 12,
) -> list[SampleRequest]:
    params = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
    return [
        SampleRequest.create(model="tiny", dataset="words", problem_id=f"p{p}", index=j, prompt=prompt,
                             params=params, base_seed=0)
        for p, prompt in enumerate(prompts)
        for j in indices
    ]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def sampler(tiny_path: Path) -> HFSampler:
    return HFSampler(str(tiny_path), batch_size=4, device="cpu")


def reference(sampler: HFSampler, request: SampleRequest) -> tuple[str, int, str]:
    """(text, generated tokens, finish reason) from HF generate on the unpadded prompt alone."""
    inputs = sampler.tokenizer(request.prompt, return_tensors="pt")
    temperature = request.params["temperature"]
    processors = [GumbelSampler([request.seed], temperature, request.params["top_p"])] if temperature > 0 else []
    with torch.inference_mode():
        output = sampler.model.generate(
            **inputs, max_new_tokens=request.params["max_new_tokens"], do_sample=False, logits_processor=processors
        )
    ids = output[0, inputs["input_ids"].shape[1] :].tolist()
    eos = sampler.tokenizer.eos_token_id
    if eos in ids:
        ids = ids[: ids.index(eos) + 1]
        return sampler.tokenizer.decode(ids, skip_special_tokens=True), len(ids), "stop"
    return sampler.tokenizer.decode(ids, skip_special_tokens=True), len(ids), "length"


def test_sample_depends_only_on_prompt_and_seed(sampler: HFSampler) -> None:
    requests = make_requests(PROMPTS, indices=range(2))
    batched = sampler.generate(requests)  # 12 requests, batches of 4 mixing prompt lengths
    assert [s.key for s in batched] == [r.key for r in requests]
    for request, sample in zip(requests, batched, strict=True):
        alone = sampler.generate([request])[0]
        assert (alone.text, alone.generated_tokens) == (sample.text, sample.generated_tokens)


def test_tokens_and_finish_reasons_match_unbatched_generate(sampler: HFSampler) -> None:
    requests = make_requests(PROMPTS, indices=range(3))
    samples = sampler.generate(requests)
    for request, sample in zip(requests, samples, strict=True):
        assert (sample.text, sample.generated_tokens, sample.finish_reason) == reference(sampler, request)
        assert sample.prompt_tokens == len(sampler.tokenizer(request.prompt)["input_ids"])
        assert (sample.backend, sample.seed, sample.params) == ("hf", request.seed, dict(request.params))
        assert sample.seconds > 0
    assert {s.finish_reason for s in samples} == {"stop", "length"}  # both paths exercised


def test_different_seeds_give_different_samples(sampler: HFSampler) -> None:
    samples = sampler.generate(make_requests(PROMPTS[:1], indices=range(8)))
    assert len({s.seed for s in samples}) == 8
    assert len({s.text for s in samples}) >= 6


def test_temperature_zero_is_plain_greedy(sampler: HFSampler) -> None:
    requests = make_requests(PROMPTS, temperature=0.0)
    for request, sample in zip(requests, sampler.generate(requests), strict=True):
        inputs = sampler.tokenizer(request.prompt, return_tensors="pt")
        with torch.inference_mode():
            output = sampler.model.generate(**inputs, max_new_tokens=12, do_sample=False)
        greedy = sampler.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        assert sample.text == greedy


def test_requests_with_different_params_are_each_honoured(sampler: HFSampler) -> None:
    short, long = make_requests(PROMPTS[:2], max_new_tokens=2), make_requests(PROMPTS[:2], max_new_tokens=12)
    mixed = sampler.generate([short[0], long[0], short[1], long[1]])
    assert [s.key for s in mixed] == [short[0].key, long[0].key, short[1].key, long[1].key]
    assert all(s.generated_tokens <= s.params["max_new_tokens"] for s in mixed)
    assert max(s.generated_tokens for s in mixed) > 2


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.5, 1.0), (2.0, 1.0), (1.0, 0.8)])
def test_gumbel_sampler_draws_from_softmax(temperature: float, top_p: float) -> None:
    """2,000 seeded draws from fixed logits match softmax(logits / T), renormalised over the top-p set."""
    probs = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    expected = probs ** (1 / temperature)
    if top_p < 1.0:  # keep the smallest head whose mass reaches top_p
        expected[(probs.cumsum(0) - probs) >= top_p] = 0.0
    expected = expected / expected.sum()
    draws = 2000
    scores = probs.log().expand(draws, -1)
    processor = GumbelSampler(range(draws), temperature, top_p)
    counts = torch.bincount(processor(torch.zeros(draws, 1, dtype=torch.long), scores).argmax(-1), minlength=5)
    assert counts[expected == 0].sum() == 0
    observed, wanted = counts[expected > 0].double(), draws * expected[expected > 0].double()
    chi2 = float(((observed - wanted) ** 2 / wanted).sum())
    assert chi2 < 18.5, (counts.tolist(), wanted.tolist())  # chi-square, df <= 4, p = 0.001


def test_gumbel_noise_is_per_row() -> None:
    """A row's noise depends on its seed only, not on which rows share its batch."""
    scores = torch.zeros(3, 7)
    together = GumbelSampler([1, 2, 3], 1.0)(None, scores)  # type: ignore[arg-type]
    alone = GumbelSampler([2], 1.0)(None, scores[:1])  # type: ignore[arg-type]
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[2])
