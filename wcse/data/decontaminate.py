"""Decontamination: word n-gram overlap between what a run trains on and what it evaluates on.

Contaminated SFT data silently inflates every finetuned score, and a WC-vs-SE comparison
inherits it, so every train problem, few-shot exemplar and kept sample is checked against every
evaluation split of the run (validation, test, the transfer set's test) before it is used.

Texts are normalised (lower case, runs of letters and digits as words: punctuation, LaTeX
commands' backslashes and spacing do not hide a copy) and an item overlaps an evaluation item
when they share one word n-gram (n = 13 by default, as GPT-3's decontamination; open-r1 uses 8).
An evaluation item shorter than n words has no n-gram: it is matched whole (an item whose
normalised text equals it), which catches exact copies of short problems without flagging every
solution that happens to contain their few words.

A single shared n-gram also flags boilerplate ("where m and n are relatively prime positive
integers find m" joins 30-odd MATH problems), so each match carries its *coverage*, the share
of the item's words inside shared n-grams (Llama 2's contamination measure), and ``min_coverage``
flags only items covered at least that much (0: any shared n-gram, GPT-3's rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The normalised words of ``text``."""
    return WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> Iterator[str]:
    for i in range(len(tokens) - n + 1):
        yield " ".join(tokens[i : i + n])


@dataclass(frozen=True)
class Match:
    """Where an item overlaps: the evaluation item of its first shared n-gram, that n-gram, and
    the share of the item's words inside shared n-grams."""

    against: str
    text: str
    coverage: float


class Index:
    """The n-grams of every evaluation item, each pointing at the first item that has it."""

    def __init__(self, items: Iterable[tuple[str, str]], n: int, min_coverage: float = 0.0) -> None:
        """``items``: (name, text) of every evaluation item."""
        if n < 1:
            raise ValueError(f"decontaminate.ngram must be >= 1, got {n}")
        if not 0 <= min_coverage <= 1:
            raise ValueError(f"decontaminate.min_coverage must be in [0, 1], got {min_coverage}")
        self.n, self.min_coverage = n, min_coverage
        self.grams: dict[str, str] = {}
        self.whole: dict[str, str] = {}  # evaluation items shorter than n words, by their normalised text
        self.size = 0
        for name, text in items:
            self.size += 1
            tokens = words(text)
            if len(tokens) < n:
                self.whole.setdefault(" ".join(tokens), name)
            for gram in ngrams(tokens, n):
                self.grams.setdefault(gram, name)

    def match(self, text: str) -> Match | None:
        """How ``text`` overlaps the evaluation items, or None when it is clean (or covered less
        than ``min_coverage``)."""
        tokens = words(text)
        joined = " ".join(tokens)
        if joined in self.whole:
            return Match(self.whole[joined], joined, 1.0)
        shared = [i for i, gram in enumerate(ngrams(tokens, self.n)) if gram in self.grams]
        if not shared:
            return None
        covered: set[int] = set()
        for i in shared:
            covered.update(range(i, i + self.n))
        coverage = len(covered) / len(tokens)
        if coverage < self.min_coverage:
            return None
        first = " ".join(tokens[shared[0] : shared[0] + self.n])
        return Match(self.grams[first], first, round(coverage, 4))
