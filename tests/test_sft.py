"""The completion-only loss mask and padding that every finetuning run relies on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from wcse.train.sft import IGNORE_INDEX, TrainSpec, encode_example, make_collator

WORDS = "what is two plus three ? Answer : 2 + 3 = 5 . #### so".split()


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer built offline that adds <s> and pads on the left, like the toy one."""
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        padding_side="left",
    )


PROMPT = "what is two plus three ? Answer :"
COMPLETION = " 2 + 3 = 5 . #### 5"


def test_prompt_masked_completion_and_eos_counted(tokenizer: PreTrainedTokenizerFast) -> None:
    ex = encode_example(tokenizer, PROMPT, COMPLETION, max_length=64)
    n_prompt = 1 + len(PROMPT.split())  # <s> + words
    n_completion = len(COMPLETION.split()) + 1  # words + </s>
    assert len(ex["input_ids"]) == len(ex["labels"]) == len(ex["attention_mask"]) == n_prompt + n_completion
    assert ex["input_ids"][0] == tokenizer.bos_token_id
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["labels"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ex["input_ids"][n_prompt:-1]) == COMPLETION.strip()
    assert tokenizer.unk_token_id not in ex["input_ids"]


def test_truncation_from_the_right(tokenizer: PreTrainedTokenizerFast) -> None:
    full = encode_example(tokenizer, PROMPT, COMPLETION, max_length=64)
    cut = encode_example(tokenizer, PROMPT, COMPLETION, max_length=12)
    assert cut["input_ids"] == full["input_ids"][:12]
    assert cut["labels"] == full["labels"][:12]
    assert tokenizer.eos_token_id not in cut["labels"]  # the cut solution does not learn to stop
    only_prompt = encode_example(tokenizer, PROMPT, COMPLETION, max_length=5)
    assert only_prompt["labels"] == [IGNORE_INDEX] * 5


def test_collator_pads_right_with_ignored_labels(tokenizer: PreTrainedTokenizerFast) -> None:
    long = encode_example(tokenizer, PROMPT, COMPLETION, max_length=64)
    short = encode_example(tokenizer, "two plus three ?", " 5", max_length=64)
    batch = make_collator(tokenizer)([long, short])
    n, pad = len(short["input_ids"]), len(long["input_ids"]) - len(short["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["input_ids"][1].tolist() == short["input_ids"] + [tokenizer.pad_token_id] * pad
    assert batch["labels"][1].tolist() == short["labels"] + [IGNORE_INDEX] * pad
    assert batch["attention_mask"][1].tolist() == [1] * n + [0] * pad
    assert batch["labels"][0].tolist() == long["labels"] and batch["attention_mask"][0].all()
    assert tokenizer.padding_side == "left"  # the tokenizer saved for generation is untouched


def test_model_loss_is_mean_nll_over_completion_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    """The HF loss with these labels is exactly the completion-only objective, pads included."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).eval()
    examples = [
        encode_example(tokenizer, PROMPT, COMPLETION, max_length=64),
        encode_example(tokenizer, "two plus three ?", " 5 . #### 5", max_length=64),
    ]
    batch = make_collator(tokenizer)(examples)
    with torch.no_grad():
        out = model(**batch)
    log_probs = F.log_softmax(out.logits.float(), dim=-1)
    nll = []
    for row, ex in enumerate(examples):
        for t in range(1, len(ex["input_ids"])):
            if ex["labels"][t] != IGNORE_INDEX:  # token t is predicted from position t - 1
                nll.append(-log_probs[row, t - 1, ex["input_ids"][t]])
    assert len(nll) == (len(COMPLETION.split()) + 1) + (len(" 5 . #### 5".split()) + 1)  # words + </s> each
    torch.testing.assert_close(out.loss, torch.stack(nll).mean())


def test_spec_round_trip_and_validation(tmp_path) -> None:
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
