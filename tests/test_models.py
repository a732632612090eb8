"""Model identity and loading (wcse.models): pinned revisions, the attention that honours Gemma2's
soft-capping, and the pad-token fallback, on real transformers models and tokenizers.

Pinned revisions are read from a hub cache built here in huggingface_hub's own layout
(``models--org--name/snapshots/<commit>``, ``refs/<name>``) in offline mode, so ``revision=`` is
resolved by the real hub client, with no network.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers import models as token_models
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from wcse import models
from wcse.sampling.hf import HFSampler
from wcse.sampling.store import SampleRequest
from wcse.toy import tokenizer as toy_tokenizer
from wcse.toy import world

TOY = Path(__file__).resolve().parents[1] / "wcse" / "toy" / "checkpoints"
COMMIT_A, COMMIT_B = "a" * 40, "0123456789abcdef0123456789abcdef01234567"
GEMMA2 = dict(  # a tiny Gemma2 with the real model's caps (attention 50, final logits 30)
    vocab_size=len(toy_tokenizer.vocabulary()), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, sliding_window=16, max_position_embeddings=128,
    attn_logit_softcapping=50.0, final_logit_softcapping=30.0, pad_token_id=0, bos_token_id=2, eos_token_id=3,
)
LLAMA = dict(
    vocab_size=len(toy_tokenizer.vocabulary()), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
    num_attention_heads=1,
    num_key_value_heads=1, head_dim=64, max_position_embeddings=128, bos_token_id=2, eos_token_id=3,
)


def tokenizer_without_pad(*, eos: bool = True) -> PreTrainedTokenizerFast:
    """The toy vocabulary as a tokenizer that, like Llama-3 base's, has BOS and EOS but no pad token."""
    vocab = {word: i for i, word in enumerate(toy_tokenizer.vocabulary())}
    core = Tokenizer(token_models.WordLevel(vocab=vocab, unk_token=toy_tokenizer.UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    special = {"eos_token": toy_tokenizer.EOS} if eos else {}
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=toy_tokenizer.BOS, unk_token=toy_tokenizer.UNK,
                                   padding_side="left", **special)


def save_llama(path: Path, *, layers: int = 1, tokenizer: PreTrainedTokenizerFast | None = None) -> Path:
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**{**LLAMA, "num_hidden_layers": layers})).save_pretrained(path)
    (tokenizer or toy_tokenizer.build_tokenizer()).save_pretrained(path)
    return path


def hub_cache(root: Path, repo: str, snapshots: dict[str, Path], refs: dict[str, str]) -> Path:
    """``root`` as a hub cache holding ``repo`` at the given commits (folder per commit) and refs."""
    entry = root / f"models--{repo.replace('/', '--')}"
    for commit, folder in snapshots.items():
        shutil.copytree(folder, entry / "snapshots" / commit)
    (entry / "refs").mkdir(parents=True)
    for name, commit in refs.items():
        (entry / "refs" / name).write_text(commit)
    return root


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``org/tiny``: main is a 1-layer Llama at COMMIT_A, tag v2 a 2-layer one at COMMIT_B."""
    snapshots = {COMMIT_A: save_llama(tmp_path / "a", layers=1), COMMIT_B: save_llama(tmp_path / "b", layers=2)}
    cache = hub_cache(tmp_path / "hub", "org/tiny", snapshots, {"main": COMMIT_A, "v2": COMMIT_B})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


# ----------------------------------------------------------------- revisions
@pytest.mark.parametrize(("path", "expected"), [
    (f"google/gemma-2-9b@{COMMIT_B}", ("google/gemma-2-9b", COMMIT_B)),
    ("google/gemma-2-9b@v1.0", ("google/gemma-2-9b", "v1.0")),
    ("org/model@refs/pr/1", ("org/model", "refs/pr/1")),  # branch names may hold "/"
    ("gpt2@main", ("gpt2", "main")),  # ids without an owner
    ("google/gemma-2-9b", ("google/gemma-2-9b", None)),
    ("toy:se", ("toy:se", None)),
    # Not hub ids: left whole, for from_pretrained to read as the folder they name.
    ("/data/models/gemma@v2", ("/data/models/gemma@v2", None)),
    ("./runs/gemma@v2", ("./runs/gemma@v2", None)),
    ("~/models/gemma@v2", ("~/models/gemma@v2", None)),
    ("runs/2024/gemma@v2", ("runs/2024/gemma@v2", None)),
    ("org/model@", ("org/model@", None)),
])
def test_only_hub_ids_are_split_at_the_revision(path: str, expected: tuple[str, str | None]) -> None:
    assert models.split_revision(path) == expected


def test_an_existing_folder_is_never_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``org/model@v1`` that exists on disk is that folder (transformers, too, reads a folder before the hub)."""
    monkeypatch.chdir(tmp_path)
    assert models.split_revision("org/model@v1") == ("org/model", "v1")
    save_llama(tmp_path / "org" / "model@v1")
    assert models.split_revision("org/model@v1") == ("org/model@v1", None)
    model = models.load_causal_lm("org/model@v1")  # loads, and so do absolute folders with an "@"
    assert model.config.num_hidden_layers == 1
    assert models.load_tokenizer(str(tmp_path / "org" / "model@v1")).pad_token == toy_tokenizer.PAD


def test_the_revision_reaches_from_pretrained(offline_hub: Path) -> None:
    assert models.load_causal_lm("org/tiny").config.num_hidden_layers == 1  # main
    assert models.load_causal_lm(f"org/tiny@{COMMIT_A}").config.num_hidden_layers == 1
    assert models.load_causal_lm(f"org/tiny@{COMMIT_B}").config.num_hidden_layers == 2
    assert models.load_causal_lm("org/tiny@v2").config.num_hidden_layers == 2  # a tag
    assert models.load_tokenizer("org/tiny@v2").eos_token == toy_tokenizer.EOS
    with pytest.raises(OSError):  # a commit the cache does not hold is not quietly replaced by main
        models.load_causal_lm(f"org/tiny@{'c' * 40}")
    sampler = HFSampler(f"org/tiny@{COMMIT_B}", device="cpu")  # the HF backend loads through the same path
    assert sampler.model.config.num_hidden_layers == 2


@pytest.mark.slow
def test_vllm_serves_the_pinned_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``org/toy@v2`` in vLLM is the model at v2 (the toy SE), not main's (the toy WC): the engine's
    snapshot and config, and greedy answers that agree with HF's at v2 (vLLM and HF agree mostly,
    not always). One engine start: ~25 s on an idle machine."""
    pytest.importorskip("vllm")
    from wcse.sampling.vllm_backend import VLLMSampler

    cache = hub_cache(tmp_path / "hub", "org/toy", {COMMIT_A: TOY / "wc", COMMIT_B: TOY / "se"},
                      {"main": COMMIT_A, "v2": COMMIT_B})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # this process's hub client
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # the engine processes'
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    params = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 48}
    requests = [SampleRequest.create(model="toy", dataset="toy", problem_id=p.id, index=0, params=params, base_seed=0,
                                     prompt=toy_tokenizer.prompt(p.question)) for p in world.generate("test", 8, 0)]
    hf = {rev: [s.text for s in HFSampler(f"org/toy@{rev}", device="cpu").generate(requests)] for rev in ("main", "v2")}
    with VLLMSampler("org/toy@v2", max_model_len=256, enforce_eager=True,
                     dtype="float32") as sampler:
        config = sampler.llm.llm_engine.model_config
        # vLLM resolves the tag to its commit's snapshot folder, and reads the SE's config there
        assert (Path(config.model).name, config.revision, config.hf_config.hidden_size) == (COMMIT_B, "v2", 256)
        texts = [s.text for s in sampler.generate(requests)]
    agree = {rev: sum(a == b for a, b in zip(texts, hf[rev], strict=True)) for rev in hf}
    assert agree["v2"] >= 6 and agree["v2"] > agree["main"], agree


def test_the_revision_is_part_of_the_cache_key(tmp_path: Path) -> None:
    """Hub ids are keyed by the id with its revision; folders by their content, whatever their name."""
    pinned = {models.fingerprint(f"google/gemma-2-9b@{rev}") for rev in (COMMIT_A, COMMIT_B, "v1.0")}
    assert len(pinned) == 3 and models.fingerprint("google/gemma-2-9b") not in pinned
    assert models.fingerprint(f"google/gemma-2-9b@{COMMIT_B}") == f"google/gemma-2-9b@{COMMIT_B}"
    one, same = save_llama(tmp_path / "gemma@v1"), save_llama(tmp_path / "copy")
    assert models.fingerprint(str(one)) == models.fingerprint(str(same))  # content, not the name's "@v1"
    assert models.fingerprint(str(save_llama(tmp_path / "two", layers=2))) != models.fingerprint(str(one))


# ----------------------------------------------------------------- attention and soft-capping
def _gemma2(**overrides: object) -> Gemma2ForCausalLM:
    """A tiny Gemma2 with weights large enough that attention scores pass the cap of 50, as trained
    models' do; at the usual init scale (0.02) scores stay near 0, where tanh is the identity."""
    torch.manual_seed(0)
    return Gemma2ForCausalLM(Gemma2Config(**{**GEMMA2, "initializer_range": 0.5, **overrides})).eval()


def _logits(model: Gemma2ForCausalLM, attention: str, ids: torch.Tensor) -> torch.Tensor:
    model.set_attn_implementation(attention)
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_sdpa_ignores_gemma2_attention_soft_capping_and_eager_applies_it() -> None:
    """sdpa's logits are exactly those of the same weights without the attention cap; eager's are not.

    The final-logit cap is applied after the LM head by every implementation: |logits| < 30.
    """
    ids = torch.randint(4, GEMMA2["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(0))
    capped, uncapped = _gemma2(), _gemma2(attn_logit_softcapping=None)
    eager, sdpa = _logits(capped, "eager", ids), _logits(capped, "sdpa", ids)
    torch.testing.assert_close(sdpa, _logits(uncapped, "eager", ids), atol=1e-4, rtol=0)  # the cap is gone
    torch.testing.assert_close(_logits(uncapped, "sdpa", ids), _logits(uncapped, "eager", ids), atol=1e-4, rtol=0)
    assert (eager - sdpa).abs().max() > 0.1  # observed 0.47
    unbounded = _gemma2(final_logit_softcapping=None)
    assert _logits(unbounded, "eager", ids).abs().max() > 30  # so the final cap has work to do
    assert eager.abs().max() < 30 and sdpa.abs().max() < 30


def test_gemma2_loads_with_an_attention_that_caps(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    Gemma2ForCausalLM(Gemma2Config(**GEMMA2)).save_pretrained(tmp_path / "gemma2")
    save_llama(tmp_path / "llama")
    expected = "flash_attention_2" if models.flash_attention_softcaps() else "eager"
    assert models.load_causal_lm(str(tmp_path / "gemma2")).config._attn_implementation == "eager"  # fp32 / CPU
    assert models.load_causal_lm(str(tmp_path / "gemma2"), gpu_16bit=True).config._attn_implementation == expected
    assert models.load_causal_lm(str(tmp_path / "llama")).config._attn_implementation == "sdpa"  # no cap: the default
    assert not [r for r in caplog.records if r.name == "wcse.models"]
    with caplog.at_level(logging.WARNING, logger="wcse.models"):  # asked for: given, with a warning
        assert models.load_causal_lm(str(tmp_path / "gemma2"), attn_implementation="sdpa").config._attn_implementation == "sdpa"
        assert models.load_causal_lm(str(tmp_path / "llama"), attn_implementation="eager").config._attn_implementation == "eager"
    assert [r.getMessage() for r in caplog.records if r.name == "wcse.models"] == [
        "attn_implementation=sdpa ignores this model's attn_logit_softcapping=50.0: its attention is not the one "
        "it was trained with; use one of ['eager', 'flash_attention_2', 'flex_attention']"
    ]
    sampler = HFSampler(str(tmp_path / "gemma2"), device="cpu")  # sampling loads the same way
    assert sampler.model.config._attn_implementation == "eager"


def test_attention_choice_follows_the_config_not_the_model_name() -> None:
    assert models.attention_implementation(Gemma2Config(), None, gpu_16bit=False) == "eager"
    assert models.attention_implementation(Gemma2Config(attn_logit_softcapping=None), None, gpu_16bit=False) is None
    assert models.attention_implementation(LlamaConfig(), None, gpu_16bit=True) is None
    assert models.attention_implementation(LlamaConfig(), "flex_attention", gpu_16bit=False) == "flex_attention"


# ----------------------------------------------------------------- pad token
def test_a_tokenizer_without_pad_token_pads_with_eos_else_unk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name, eos in (("llama3-like", True), ("no-eos", False)):
        tokenizer_without_pad(eos=eos).save_pretrained(tmp_path / name)
    with caplog.at_level(logging.WARNING, logger="wcse.models"):
        with_eos = models.load_tokenizer(str(tmp_path / "llama3-like"))
        without_eos = models.load_tokenizer(str(tmp_path / "no-eos"))
    assert (with_eos.pad_token, with_eos.pad_token_id) == (toy_tokenizer.EOS, with_eos.eos_token_id)
    assert without_eos.pad_token == toy_tokenizer.UNK
    assert [r.getMessage() for r in caplog.records if r.name == "wcse.models"] == [
        f"tokenizer of {tmp_path / 'llama3-like'} has no pad token: padding with '</s>' (eos)",
        f"tokenizer of {tmp_path / 'no-eos'} has no pad token: padding with '<unk>' (unk)",
    ]
    bare = tokenizer_without_pad(eos=False)
    bare.unk_token = None
    with pytest.raises(ValueError, match="tokenizer of bare: it has no pad, eos or unk token"):
        models.ensure_pad_token(bare, "bare")


def test_hf_sampling_pads_with_eos_and_each_sample_is_as_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A batch of prompts of different lengths needs padding; EOS as pad changes no sample."""
    path = save_llama(tmp_path / "llama3-like", tokenizer=tokenizer_without_pad())
    with caplog.at_level(logging.WARNING, logger="wcse.models"):
        sampler = HFSampler(str(path), device="cpu", batch_size=4)
    assert "has no pad token: padding with '</s>' (eos)" in caplog.text
    assert sampler.tokenizer.pad_token_id == sampler.tokenizer.eos_token_id
    params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8}
    prompts = ["Ava has 3 apples . Answer :", "Ava has 12 more apples than Ben . How many does Ben have ? Answer :"]
    requests = [SampleRequest.create(model="m", dataset="d", problem_id=f"p{i}", index=0, prompt=p, params=params,
                                     base_seed=0) for i, p in enumerate(prompts)]
    batched = sampler.generate(requests)
    alone = [sampler.generate([r])[0] for r in requests]
    assert [(s.text, s.generated_tokens) for s in batched] == [(s.text, s.generated_tokens) for s in alone]
    assert all(s.generated_tokens > 0 for s in batched)
