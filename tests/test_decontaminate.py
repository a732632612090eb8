"""Decontamination: the n-gram index, the known overlaps of the real data, and a run that drops
what overlaps and counts it in the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import SHARED_DATA, compose_config, needs_data
from wcse import runner
from wcse.data import sources
from wcse.data.decontaminate import Index, words
from wcse.data.near_duplicates import Embedder, EmbeddingIndex, Near
from wcse.errors import ConfigError
from wcse.report.console import decontamination_line
from wcse.settings import validate
from wcse.stages.verify import decontaminated
from wcse.toy import world
from wcse.toy.ladder import SHIPPED

TEST_QUESTION = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)


def test_normalising_sees_through_case_punctuation_and_latex() -> None:
    assert words(r"What is $\frac{1}{2}$ of 10,000?") == ["what", "is", "frac", "1", "2", "of", "10", "000"]
    index = Index([("test/1", TEST_QUESTION)], 13)
    copy = TEST_QUESTION.upper().replace(",", " ,").replace("?", " ?!")
    match = index.match("Some preamble. " + copy)
    assert match is not None and match.against == "test/1" and len(match.text.split()) == 13
    assert 0.8 < match.coverage < 1  # the preamble's two words are not covered
    assert index.match("Natalia sold clips to 48 of her friends in April.") is None  # 10 shared words < 13


def test_short_evaluation_items_match_only_whole() -> None:
    index = Index([("test/1", "Compute $\\dbinom{8}{4}$.")], 13)
    assert index.match("compute   \\dbinom{8}{4}") is not None  # the same item, respaced
    assert index.match("We compute dbinom 8 4 = 70, so the answer is 70.") is None  # a solution using its words


def test_min_coverage_skips_boilerplate_but_not_copies() -> None:
    boilerplate = "can be written as m/n where m and n are relatively prime positive integers. Find m+n."
    index = Index([("test/1", "The probability that a die shows six twice " + boilerplate)], 13, min_coverage=0.5)
    other = "Three fair coins are tossed one after another onto a table, and the chance that exactly two of them land heads up "
    assert index.match(other + boilerplate) is None  # one clause shared: 18 of 40 words
    assert index.match("The probability that a die shows six twice " + boilerplate) is not None


@pytest.mark.parametrize("bad", [{"n": 0}, {"n": 13, "min_coverage": 1.5}])
def test_bad_settings_name_the_key(bad: dict) -> None:
    with pytest.raises(ValueError, match=r"decontaminate\.(ngram|min_coverage)"):
        Index([], **bad)


def test_the_toy_splits_are_disjoint_and_only_templated_clauses_overlap() -> None:
    """The toy world buckets questions by a hash of their text, so no train question is an
    evaluation question; its templated sentences still share 13-word clauses with a few, which
    the check flags as it flags real data's boilerplate."""
    train = world.generate("train", 1000, 0, (1, 2, 3, 4, 5))
    evaluation = world.generate("validation", 500, 0, (1, 2, 3, 4, 5)) + world.generate("test", 2000, 0, (1, 2, 3, 4, 5))
    assert not {" ".join(words(p.question)) for p in train} & {" ".join(words(p.question)) for p in evaluation}
    index = Index([(p.id, p.question) for p in evaluation], 13)
    flagged = [m for p in train if (m := index.match(p.question)) is not None]
    assert 0 < len(flagged) < 30 and all(m.coverage < 1 for m in flagged)  # near-duplicates, never copies


@needs_data("math/test.jsonl", "math500/test.jsonl", "gsm8k/train.jsonl", "gsm8k/test.jsonl")
def test_math_500_is_drawn_from_math_test_and_gsm8k_train_barely_overlaps_its_test() -> None:
    math_test = sources.load_split("math", "test", path=str(SHARED_DATA / "math" / "test.jsonl"))
    math_500 = sources.load_split("math", "test", path=str(SHARED_DATA / "math500" / "test.jsonl"))
    index = Index([(p.id, p.question) for p in math_test], 13)
    matches = [index.match(p.question) for p in math_500]
    assert all(m is not None for m in matches)  # every one of the 500 is a MATH test problem
    assert sum(m.coverage == 1.0 for m in matches) >= 495  # nearly all verbatim
    gsm_test = sources.load_split("gsm8k", "test", path=str(SHARED_DATA / "gsm8k" / "test.jsonl"))
    gsm_train = sources.load_split("gsm8k", "train", path=str(SHARED_DATA / "gsm8k" / "train.jsonl"))
    index = Index([(p.id, p.question) for p in gsm_test], 13)
    assert sum(index.match(p.question) is not None for p in gsm_train) == 4  # of 7,473 (README figure)


def gsm8k_files(root: Path, train: list[str], test: list[str]) -> Path:
    (root / "gsm8k").mkdir(parents=True)
    for name, questions in (("train", train), ("test", test)):
        rows = [{"question": q, "answer": f"It is {i}.\n#### {i}"} for i, q in enumerate(questions)]
        (root / "gsm8k" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.parametrize("drop", [True, False])
def test_a_train_problem_copying_a_test_problem_is_dropped_and_counted(tmp_path: Path, drop: bool) -> None:
    data = gsm8k_files(
        tmp_path / "data",
        train=[f"Tom has {i} apples and buys {i + 1} more apples. How many apples does Tom have?" for i in range(6)]
        + [TEST_QUESTION.replace("Natalia", "natalia").replace(",", "")],
        test=[TEST_QUESTION, "Weng earns $12 an hour for babysitting. How much did she earn for 50 minutes?"],
    )
    cfg = compose_config(
        tmp_path, "dataset=gsm8k", f"paths.data_dir={data}", "dataset.validation=null", "dataset.train.exclude=[]", "stages=[dataset]",
        f"decontaminate.drop={str(drop).lower()}",
    )
    summary = runner.run(cfg)
    report = summary.dataset.decontamination
    assert (report.train.checked, report.train.flagged, report.dropped) == (7, 1, 1 if drop else 0)
    assert report.exemplars.flagged == 0 and report.evaluation_items == {"dataset": 2}  # the 8 exemplars are GSM8K train problems
    assert summary.dataset.splits["train"].n == (6 if drop else 7)
    flagged = [json.loads(line) for line in open(Path(report.dir) / "train.jsonl")]
    assert [(f["id"], f["against"].split()[1:]) for f in flagged] == [("gsm8k-train-6", ["test", "gsm8k-test-0"])]


def test_a_transfer_sets_overlaps_are_counted_and_listed_never_dropped(tmp_path: Path) -> None:
    """The toy variants (test problems with new numbers) share templated clauses with train
    problems: counted against the transfer set, while the train split is what it is without one."""
    plain = runner.run(compose_config(tmp_path, "stages=[dataset]"))
    summary = runner.run(compose_config(tmp_path, "dataset@transfer=toy_arith_variants", "stages=[dataset]"))
    report = summary.dataset.decontamination
    assert report.evaluation_items == {"dataset": 2500, "transfer": summary.dataset.transfer.splits["test"].n}
    assert report.train.flagged_transfer > 0 and report.train.flagged == plain.dataset.decontamination.train.flagged
    assert summary.dataset.splits["train"].n == plain.dataset.splits["train"].n == 1000 - report.dropped
    listed = [json.loads(line) for line in open(Path(report.dir) / "train.jsonl")]
    assert sum(row["group"] == "transfer" for row in listed) >= report.train.flagged_transfer


def test_dropping_every_train_problem_is_refused_naming_the_keys(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, "experiment=toy_tiny", "decontaminate.ngram=3", "stages=[dataset]")
    with pytest.raises(ConfigError, match=r"every one of the 40 train problems .*decontaminate\.ngram"):
        runner.run(cfg)


def test_kept_samples_overlapping_an_evaluation_split_are_listed_counted_and_dropped(tmp_path: Path) -> None:
    """At n = 2 the toy solutions share word bigrams with test questions ("zoe has"): the
    verify artifacts list them and the summary counts them; with drop=false (the toy train
    questions would all go at n = 2) they stay in the SFT rows, and dropping takes exactly them out."""
    cfg = compose_config(
        tmp_path, "experiment=toy_tiny", "decontaminate.ngram=2", "decontaminate.drop=false", "stages=[dataset,sample,verify]"
    )
    summary = runner.run(cfg)
    planned = runner.plan(cfg)
    index = planned.outputs["dataset"].index("dataset", 2, 0.0)
    for role, counts in summary.filter.models.items():
        folder = planned.outputs["verify"][role].path
        flagged = [json.loads(line) for line in open(folder / "decontaminated.jsonl")]
        rows = [json.loads(line) for line in open(folder / "sft.jsonl")]
        assert counts.decontaminated == len(flagged) > 0 and counts.kept_for_training == len(rows)
        assert all(index.match(row["completion"]).against == row["against"] for row in flagged)
        kept, dropped = decontaminated(rows, index, drop=True)
        assert len(kept) == len(rows) - len(flagged) and all(index.match(row["completion"]) is None for row in kept)
        assert [row["against"] for row in dropped] == [row["against"] for row in flagged]


TOY_ENCODER = SHIPPED / "wc"  # a real transformers folder: its embeddings mean nothing, their arithmetic is exact
REPHRASED = (  # TEST_QUESTION in other words: no 13-gram in common
    "In April, Natalia sold clips to 48 friends; in May she sold half that number. How many clips did she sell in total over the two months?"
)


def test_embeddings_do_not_depend_on_the_batch_and_the_threshold_is_inclusive() -> None:
    texts = ["Tom has 3 apples.", TEST_QUESTION, "Weng earns $12 an hour for babysitting. How much did she earn for 50 minutes?"]
    alone = torch.cat([Embedder(str(TOY_ENCODER), batch_size=1)([t]) for t in texts])
    batched = Embedder(str(TOY_ENCODER), batch_size=2)(texts)  # padded to the longest of each pair
    assert torch.allclose(alone, batched, atol=1e-5) and torch.allclose(batched.norm(dim=1), torch.ones(3))
    embedder = Embedder(str(TOY_ENCODER))
    index = EmbeddingIndex([(f"test/{i}", t) for i, t in enumerate(texts[1:])], embedder, threshold=0.0)
    copy, other = index.nearest(embedder([TEST_QUESTION, texts[0]]))
    assert copy == Near("test/0", 1.0) and other.similarity < 1
    at = EmbeddingIndex([(f"test/{i}", t) for i, t in enumerate(texts[1:])], embedder, threshold=other.similarity)
    above = EmbeddingIndex([(f"test/{i}", t) for i, t in enumerate(texts[1:])], embedder, threshold=other.similarity + 1e-3)
    assert at.match(embedder([texts[0]])) == [other] and above.match(embedder([texts[0]])) == [None]
    assert EmbeddingIndex([], embedder, 0.9).match(embedder(texts)) == [None, None, None]  # nothing to compare against


def test_a_bad_threshold_or_encoder_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"decontaminate\.embedding\.threshold"):
        EmbeddingIndex([], Embedder(str(TOY_ENCODER)), threshold=1.5)
    cfg = compose_config(tmp_path, f"decontaminate.embedding.model={tmp_path / 'no-such-encoder'}")
    with pytest.raises(ConfigError, match=r"decontaminate\.embedding\.model=.*no such folder"):
        validate(cfg)
    with pytest.raises(ConfigError, match=r"decontaminate\.embedding\.model='toy:wc': an encoder's folder or hub id"):
        validate(compose_config(tmp_path, "decontaminate.embedding.model=toy:wc"))


@pytest.mark.slow
def test_smollm2_embeddings_flag_a_rephrased_test_problem_the_ngram_check_misses(tmp_path: Path, smollm2: Path) -> None:
    """A run on GSM8K-format files whose train split holds a rephrasing of a test problem: the
    13-gram check passes it, SmolLM2's mean-pooled embeddings (0.96 against 0.87 for the nearest
    unrelated problem, 0.91 for the nearest exemplar) flag and drop it at 0.95."""
    assert Index([("test/0", TEST_QUESTION)], 13).match(REPHRASED) is None
    data = gsm8k_files(
        tmp_path / "data",
        train=[f"Tom has {i} apples and buys {i + 1} more apples. How many apples does Tom have?" for i in range(6)] + [REPHRASED],
        test=[TEST_QUESTION, "Weng earns $12 an hour for babysitting. How much did she earn for 50 minutes?"],
    )
    cfg = compose_config(
        tmp_path, "dataset=gsm8k", f"paths.data_dir={data}", "dataset.validation=null", "dataset.train.exclude=[]", "stages=[dataset]",
        f"decontaminate.embedding.model={smollm2}", "decontaminate.embedding.threshold=0.95",
    )
    summary = runner.run(cfg)
    report = summary.dataset.decontamination
    assert report.embedding.model == str(smollm2) and report.embedding.threshold == 0.95
    assert (report.train.flagged, report.train.by_embedding, report.dropped) == (1, 1, 1)
    assert (report.exemplars.checked, report.exemplars.flagged, report.exemplars.by_embedding) == (8, 0, 0)
    assert summary.dataset.splits["train"].n == 6
    (row,) = [json.loads(line) for line in open(Path(report.dir) / "train.jsonl")]
    assert row["id"] == "gsm8k-train-6" and row["against"].endswith("gsm8k-test-0") and 0.95 <= row["similarity"] < 1
    assert "1 by similarity alone" in decontamination_line(summary)
