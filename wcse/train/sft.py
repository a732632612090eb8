"""How SFT examples become supervised tokens (the run itself is a :class:`wcse.train.spec.TrainSpec`)."""

from __future__ import annotations

import copy

from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, PreTrainedTokenizerBase

IGNORE_INDEX = -100  # the label the HF causal-LM loss skips


def encode_example(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, max_length: int, *, chat: bool = False
) -> dict[str, list[int]]:
    """Token ids with a completion-only loss mask.

    Prompt and completion are tokenized separately and concatenated, so the boundary is exact;
    matching a response template at token level breaks when the template tokenizes differently
    in context (TRL issue #1920). The prompt (with the BOS the tokenizer adds, or with ``chat``
    the whole chat-template turn up to where the assistant starts) gets ``IGNORE_INDEX``; the
    completion and a final EOS are learned, so the model learns to stop.
    """
    if chat:
        prompt_ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        completion = completion.lstrip()  # the template already separates the turns
    else:
        prompt_ids = tokenizer(prompt).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    input_ids = (list(prompt_ids) + completion_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def chat_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """``prompt`` as the user turn of the tokenizer's chat template, up to where the assistant
    starts: the text a chat-format finetune (``trainer.format=chat``) is evaluated on, so it is
    tested as it was trained. A BOS the template writes is left out when the tokenizer adds one
    itself, so the text tokenizes to the ids :func:`encode_example` trains on (no double BOS)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]:
        text = text[len(bos) :]
    return text


def make_collator(
    tokenizer: PreTrainedTokenizerBase, *, packing: bool = False
) -> DataCollatorForSeq2Seq | DataCollatorWithFlattening:
    """Batches for the Trainer: padded rows, or with ``packing`` one row of concatenated examples.

    Packed rows carry ``position_ids`` restarting at 0 for each example; transformers builds a
    block-diagonal causal mask from them (sdpa, eager and flash attention), so no example attends
    to another, and the first label of each example is ``IGNORE_INDEX`` so none is predicted from
    its neighbour. The loss is the mean over completion tokens either way.

    Padding goes on the right: generation wants the tokenizer to pad on the left, but training
    numbers positions by index, so right padding keeps every sequence starting at position 0. A
    shallow copy changes the side without touching the tokenizer that is saved with the model.
    """
    if packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    right = copy.copy(tokenizer)
    right.padding_side = "right"
    return DataCollatorForSeq2Seq(right, label_pad_token_id=IGNORE_INDEX, padding=True)
