"""A word-level tokenizer for the toy world, built offline with the ``tokenizers`` library.

Every number 0..MAX_VALUE is one token, so a reasoning step ``12 + 5 = 17 .`` is six tokens
and a whole problem with its solution fits in under 100: short sequences are what make the
toy ladder trainable on a CPU in minutes.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from wcse.data import prompts
from wcse.toy import corpus, world

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"


def vocabulary() -> list[str]:
    """The fixed vocabulary, derived from the world's templates (stable across versions)."""
    words = [
        *world.NAMES,
        *world.ITEMS,
        *(w for verb in world.GAIN_VERBS + world.LOSS_VERBS for w in verb.split()),
        *"has more boxes of How many does do have now and together than ?".split(),
        *(w for text in (*corpus.QUESTION_HEADERS, *corpus.ANSWER_HEADERS, *corpus.CLOSINGS) for w in text.format(n="").split()),
        *world.OPS,
        "=",
        world.STEP_SEP,
        world.CONNECTIVE,
        world.ANSWER_MARK,
        *(str(n) for n in range(world.MAX_VALUE + 1)),
    ]
    return [PAD, UNK, BOS, EOS, *dict.fromkeys(words)]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The toy tokenizer as a ``transformers`` fast tokenizer (adds ``<s>`` in front)."""
    vocab = {word: i for i, word in enumerate(vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    return tokenizer


def prompt(question: str) -> str:
    """The zero-shot toy prompt (``wcse/data/prompts/toy.yaml``): the form finetuning and
    evaluation use; sampling puts the file's exemplars in front."""
    return prompts.template("toy").question.format(question=question)
