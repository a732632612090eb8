"""The completion-only loss mask, proved on the toy model for plain and chat prompts, padded and packed.

Expectations are counted from the text (the toy tokenizer is word-level), never read back from
``encode_example``, and every loss is checked against cross-entropies computed by hand from the
logits of each example run alone, so a mask, padding or packing bug shows as a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from wcse.data import prompts
from wcse.toy import world
from wcse.toy.tokenizer import BOS, EOS
from wcse.train.sft import IGNORE_INDEX, encode_example, make_collator
from wcse.train.spec import TrainSpec

TOY = Path(__file__).resolve().parents[1] / "wcse/toy/checkpoints/se"
USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
FORMATS = ("plain", "chat")
BATCHING = ("padded", "packed")


@dataclass(frozen=True)
class Case:
    """One SFT example and the tokens it must encode to, spelled out from its words."""

    prompt: str
    completion: str
    prompt_tokens: tuple[str, ...]
    completion_tokens: tuple[str, ...]  # the completion's words and the final EOS
    max_length: int

    @property
    def n_prompt(self) -> int:
        return len(self.prompt_tokens)

    @property
    def n_tokens(self) -> int:
        return min(self.n_prompt + len(self.completion_tokens), self.max_length)

    @property
    def supervised(self) -> range:
        """Indices of the tokens the loss must learn: the completion up to the cut."""
        return range(self.n_prompt, self.n_tokens)


def _cases(fmt: str) -> list[Case]:
    """Toy problems of different lengths: two whole, one cut mid-solution, one cut at the prompt's end."""
    cases = []
    for level, cut in ((5, None), (1, None), (3, 3), (4, 0)):
        problem = world.generate("train", 1, seed=level, levels=(level,))[0]
        prompt, completion = prompts.zero_shot("toy", problem), " " + problem.solution
        words = tuple(prompt.split())
        prompt_tokens = (BOS, *words) if fmt == "plain" else (BOS, USER, *words, END, ASSISTANT)
        completion_tokens = (*completion.split(), EOS)
        max_length = len(prompt_tokens) + (len(completion_tokens) if cut is None else cut)
        cases.append(Case(prompt, completion, prompt_tokens, completion_tokens, max_length))
    return cases


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreTrainedTokenizerBase]:
    """The toy tokenizer, and a copy with role tokens and a chat template, saved and reloaded as a run would."""
    chat = AutoTokenizer.from_pretrained(TOY)
    chat.add_special_tokens({"additional_special_tokens": [USER, ASSISTANT, END]})
    chat.chat_template = CHAT_TEMPLATE
    path = tmp_path_factory.mktemp("chat_tokenizer")
    chat.save_pretrained(path)
    return {"plain": AutoTokenizer.from_pretrained(TOY), "chat": AutoTokenizer.from_pretrained(path)}


@pytest.fixture(scope="module")
def model(tokenizers: dict[str, PreTrainedTokenizerBase]) -> PreTrainedModel:
    """The toy SE model, with embedding rows for the role tokens (the plain format never uses them)."""
    model = AutoModelForCausalLM.from_pretrained(TOY).eval()
    model.resize_token_embeddings(len(tokenizers["chat"]))
    return model


@pytest.fixture(params=["sdpa", "eager"])
def attention(request: pytest.FixtureRequest, model: PreTrainedModel) -> Iterator[str]:
    """Both attention implementations that build the packed block-diagonal mask on a CPU."""
    model.set_attn_implementation(request.param)
    yield request.param
    model.set_attn_implementation("sdpa")


def _encode(tokenizers: dict[str, PreTrainedTokenizerBase], fmt: str, cases: list[Case]) -> list[dict]:
    return [
        encode_example(tokenizers[fmt], c.prompt, c.completion, c.max_length, chat=fmt == "chat") for c in cases
    ]


def _spans(cases: list[Case], batching: str) -> list[tuple[int, slice]]:
    """Where each example lies in the batch: its own row when padded, its stretch of the one row when packed."""
    if batching == "padded":
        return [(i, slice(0, c.n_tokens)) for i, c in enumerate(cases)]
    starts = [sum(c.n_tokens for c in cases[:i]) for i in range(len(cases))]
    return [(0, slice(s, s + c.n_tokens)) for s, c in zip(starts, cases, strict=True)]


def _alone(model: PreTrainedModel, example: dict) -> torch.Tensor:
    """The logits of one example run by itself: no padding, no neighbour."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([example["input_ids"]])).logits[0]


@pytest.mark.parametrize("batching", BATCHING)
@pytest.mark.parametrize("fmt", FORMATS)
def test_labels_ignore_exactly_the_prompt(tokenizers: dict, fmt: str, batching: str) -> None:
    tokenizer, cases = tokenizers[fmt], _cases(fmt)
    examples = _encode(tokenizers, fmt, cases)
    batch = make_collator(tokenizer, packing=batching == "packed")(examples)
    for c, ex, (row, span) in zip(cases, examples, _spans(cases, batching), strict=True):
        ids, labels = batch["input_ids"][row, span].tolist(), batch["labels"][row, span].tolist()
        assert ids == ex["input_ids"] and len(ids) == c.n_tokens
        assert labels == [IGNORE_INDEX] * min(c.n_prompt, c.n_tokens) + ids[c.n_prompt :]
        tokens = tokenizer.convert_ids_to_tokens(ids)
        assert tokens[: c.n_prompt] == list(c.prompt_tokens[: c.n_tokens])
        # Whole: every word and the EOS are learned; cut: the words that fit and no EOS, so the
        # cut solution does not learn to stop.
        assert tokens[c.n_prompt :] == list(c.completion_tokens[: c.n_tokens - c.n_prompt])
    assert not any(label != IGNORE_INDEX for label in examples[-1]["labels"])  # the prompt filled max_length
    if batching == "packed":
        lengths = [c.n_tokens for c in cases]
        assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
        assert batch["position_ids"][0].tolist() == [i for n in lengths for i in range(n)]
    else:
        width = max(c.n_tokens for c in cases)
        for c, (row, _) in zip(cases, _spans(cases, batching), strict=True):  # right padding, ignored
            assert batch["attention_mask"][row].tolist() == [1] * c.n_tokens + [0] * (width - c.n_tokens)
            assert batch["labels"][row, c.n_tokens :].eq(IGNORE_INDEX).all()
            assert batch["input_ids"][row, c.n_tokens :].eq(tokenizer.pad_token_id).all()
        assert tokenizer.padding_side == "left"  # the tokenizer saved for generation is untouched


@pytest.mark.parametrize("batching", BATCHING)
@pytest.mark.parametrize("fmt", FORMATS)
def test_loss_is_the_mean_cross_entropy_of_completion_tokens(
    tokenizers: dict, model: PreTrainedModel, attention: str, fmt: str, batching: str
) -> None:
    """The model's loss on the batch is the completion-only objective, and no example sees another.

    The reference is computed from each example run alone, over the indices counted from the
    text: prompt tokens are absent from it, every completion token (EOS included) is in it once.
    """
    cases = _cases(fmt)
    examples = _encode(tokenizers, fmt, cases)
    batch = make_collator(tokenizers[fmt], packing=batching == "packed")(examples)
    with torch.no_grad():
        out = model(**batch)
    nll = []
    for c, ex, (row, span) in zip(cases, examples, _spans(cases, batching), strict=True):
        alone = _alone(model, ex)
        torch.testing.assert_close(out.logits[row, span], alone, atol=2e-5, rtol=1e-5)
        log_probs = F.log_softmax(alone, dim=-1)
        nll += [-log_probs[t - 1, ex["input_ids"][t]] for t in c.supervised]  # t is predicted at t - 1
    assert len(nll) == sum(len(c.completion_tokens) for c in cases[:2]) + 3  # two whole, 3 tokens of the cut one
    torch.testing.assert_close(out.loss, torch.stack(nll).mean(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batching", BATCHING)
@pytest.mark.parametrize("fmt", FORMATS)
def test_gradient_reaches_every_completion_token_and_no_prompt_token(
    tokenizers: dict, model: PreTrainedModel, fmt: str, batching: str
) -> None:
    """d loss / d logits is (softmax - onehot(target)) / N where a completion token is predicted, 0 elsewhere.

    So each completion token's term has weight exactly 1/N and a non-zero gradient, and the
    target of any other position (prompt, the last token, padding) cannot change the loss.
    """
    cases = _cases(fmt)
    examples = _encode(tokenizers, fmt, cases)
    batch = make_collator(tokenizers[fmt], packing=batching == "packed")(examples)
    out = model(**batch)
    (grad,) = torch.autograd.grad(out.loss, out.logits)
    logits = out.logits.detach()
    n = sum(len(c.supervised) for c in cases)
    expected = torch.zeros_like(logits)
    for c, ex, (row, span) in zip(cases, examples, _spans(cases, batching), strict=True):
        for t in c.supervised:
            at = span.start + t - 1
            target = F.one_hot(torch.tensor(ex["input_ids"][t]), logits.shape[-1]).float()
            expected[row, at] = (logits[row, at].softmax(-1) - target) / n
    torch.testing.assert_close(grad, expected, atol=1e-7, rtol=1e-4)
    learned = expected.ne(0).any(-1)
    assert int(learned.sum()) == n and grad[learned].abs().sum(-1).gt(0).all()
    assert grad[~learned].eq(0).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_packed_and_padded_agree_and_the_boundaries_matter(
    tokenizers: dict, model: PreTrainedModel, attention: str, fmt: str
) -> None:
    cases = _cases(fmt)
    examples = _encode(tokenizers, fmt, cases)
    padded, packed = (make_collator(tokenizers[fmt], packing=p)(examples) for p in (False, True))
    with torch.no_grad():
        out_padded, out_packed = model(**padded), model(**packed)
        # The same row numbered as one sequence: plain causal attention across the examples.
        leaky = model(input_ids=packed["input_ids"]).logits
    torch.testing.assert_close(out_packed.loss, out_padded.loss, atol=1e-5, rtol=0)
    spans = zip(_spans(cases, "padded"), _spans(cases, "packed"), strict=True)
    for (row, span), (_, packed_span) in spans:
        torch.testing.assert_close(out_packed.logits[0, packed_span], out_padded.logits[row, span], atol=2e-5, rtol=1e-5)
    # Without the restarting positions a later example attends to the earlier ones, and it shows.
    (_, last), alone = _spans(cases, "packed")[-1], _alone(model, examples[-1])
    assert (leaky[0, last] - alone).abs().max() > 1e-2


def test_spec_round_trip_and_validation(tmp_path: Path) -> None:
    spec = TrainSpec(output_dir="o", data_path="d.jsonl", base_model="m", max_steps=3,
                     per_device_batch_size=2, learning_rate=1e-3,
                     deepspeed={"zero_optimization": {"stage": 2}})
    spec.save(tmp_path / "spec.json")
    loaded = TrainSpec.load(tmp_path / "spec.json")
    assert loaded == spec and loaded.tokenizer_path == "m"
    with pytest.raises(ValueError):
        TrainSpec(output_dir="o", data_path="d", max_steps=1, per_device_batch_size=1, learning_rate=1.0)
    with pytest.raises(ValueError):
        TrainSpec(output_dir="o", data_path="d", max_steps=1, per_device_batch_size=1, learning_rate=1.0,
                  base_model="m", init_config={"hidden_size": 8})
