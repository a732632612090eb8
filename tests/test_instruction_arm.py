"""The instruction-following arm: OASST1 prompts answered label-free, chat-format SFT, IFEval.

Fast: the verdicts an instruction gets, the refusal of a reference-based filter, chat prompts
that tokenize as training tokenized them. Slow: ``experiment=gemini_ifeval`` end to end on CPU,
vLLM serving SmolLM2-135M-Instruct as both Gemini models through ``/v1/chat/completions`` on
127.0.0.1, the WC-LM (SmolLM2 itself) finetuned in chat format and scored on IFEval.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tests.conftest import SHARED_DATA, compose_config, needs_data
from wcse import runner
from wcse.errors import ConfigError
from wcse.records import Problem
from wcse.settings import validate
from wcse.train.sft import chat_prompt, encode_example
from wcse.verify.verifier import check_one

IFEVAL = Problem(
    id="ifeval-1", question="Write a short poem about the sea. Do not use any commas.", answer="",
    meta={"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
)
OASST = Problem(id="oasst1-x", question="What do you think about ChatGPT?", answer="")


def test_an_instruction_is_right_when_it_follows_its_instructions_and_an_oasst_prompt_has_no_reference() -> None:
    assert check_one("ifeval", IFEVAL, "The sea is wide and blue", "lenient").correct
    wrong = check_one("ifeval", IFEVAL, "The sea, wide and blue", "lenient")
    assert (wrong.correct, wrong.status) == (False, "ok")
    answer = check_one("oasst1", OASST, "It is a chat model.", "strict")
    assert (answer.correct, answer.status) == (False, "no_reference")
    assert check_one("oasst1", IFEVAL, "No commas here", "lenient").correct  # oasst1's test split is IFEval


@pytest.mark.parametrize("verifier", ["answer", "process", "answer_fpr"])
def test_a_reference_filter_on_oasst1_is_refused_naming_the_label_free_ones(tmp_path: Path, verifier: str) -> None:
    with pytest.raises(ConfigError, match=r"no reference answers.*verifier=none or verifier=judge"):
        validate(compose_config(tmp_path, "dataset=oasst1", f"verifier={verifier}"))
    validate(compose_config(tmp_path, "experiment=gemini_ifeval"))  # verifier=none


def test_a_chat_prompt_tokenizes_to_the_tokens_chat_sft_trains_on(smollm2: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    example = encode_example(tokenizer, IFEVAL.question, " The sea", 512, chat=True)
    prompt = [i for i, label in zip(example["input_ids"], example["labels"], strict=True) if label == -100]
    assert tokenizer(chat_prompt(tokenizer, IFEVAL.question)).input_ids == prompt
    assert chat_prompt(tokenizer, IFEVAL.question).endswith("<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def served(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from vllm_server import serve

    log = tmp_path_factory.mktemp("vllm-ifeval") / "server.log"
    with serve(smollm2, ["gemini-1.5-flash", "gemini-1.5-pro"], log, max_model_len=1024, kv_cache_mib=256) as url:
        yield url


@pytest.mark.slow
@needs_data("oasst1/en-validation.jsonl", "ifeval/input_data.jsonl")
def test_gemini_ifeval_runs_on_cpu_with_smollm2_standing_in(served: str, smollm2: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        # Both models sample and are filtered; one arm is finetuned and scored (SE's arm is the same path).
        tmp_path, "experiment=gemini_ifeval", "setup=self_improve", "setup.arms=[wc]", f"paths.data_dir={SHARED_DATA}",
        f"sampler.base_url={served}", "sampler.max_new_tokens=48", "sampler.concurrency=8", "sampler.api_key_env=WCSE_UNSET",
        f"model_pair.wc.target={smollm2}", f"model_pair.se.target={smollm2}",
        "dataset.max_train=2", "trainer=cpu", "trainer.format=chat", "trainer.max_steps=3", "trainer.per_device_batch_size=8",
        "trainer.max_length=256", "evaluator.limit=4", "evaluator.max_new_tokens=48", "evaluator.batch_size=4",
    )
    validate(cfg)
    summary = runner.run(cfg)
    wc, se = summary.sampling.models["wc"], summary.sampling.models["se"]
    assert (wc.samples, se.samples) == (2 * 35, 2)  # price-matched: 35 Flash answers per Pro answer
    assert summary.sampling.realised_dollar_ratio_wc_over_se is not None and wc.flops is None
    for kept in summary.filter.models.values():  # label-free: every finished answer kept, none "correct"
        assert kept.correct == 0 and kept.status == {"no_reference": kept.verified}
        assert kept.kept_for_training == kept.verified - kept.truncated
    assert summary.dataset.decontamination.evaluation_items == {"dataset": 541}  # the OASST1 prompts checked against IFEval
    result = summary.finetune.arms["wc"]
    assert result.n == 4 and result.checkpoint_selection.reason == "no validation split"
    scores = result.ifeval
    assert set(scores) >= {"prompt_level_strict", "prompt_level_loose", "instruction_level_strict", "instruction_level_loose"}
    assert scores["n"] == 4 and scores["unscorable"] == 0 and result.pass_at_1 == scores["prompt_level_strict"]
    evaluated = Path(result.dir)
    prompts = [json.loads(line)["prompt"] for line in open(evaluated / "samples.jsonl")]
    assert all(p.startswith("<|im_start|>") and p.endswith("<|im_start|>assistant\n") for p in prompts)  # as trained
    records = [json.loads(line) for line in open(evaluated / "ifeval.jsonl")]
    assert [r["follow_all_strict"] for r in records] == [
        json.loads(line)["correct"] for line in open(evaluated / "verdicts.jsonl")
    ]
