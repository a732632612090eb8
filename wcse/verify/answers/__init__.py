"""Final-answer extraction and equivalence for the real benchmarks (GSM8K, MATH, Functional MATH).

A verdict is ``(correct, extracted answer, status)``; the status says whether a comparison
took place at all, so a grader bug cannot hide as a wrong answer:

* ``ok``: the extracted answer was compared with the gold answer.
* ``no_answer``: nothing could be extracted (no number, no box, an empty or unclosed box).
* ``unparsable``: an answer was extracted but cannot be read as mathematics: math-verify cannot
  parse it, it is a phrase ("the product of the roots"), or a GSM8K expression too big to
  evaluate (``10^10^10``).
* ``error``: the gold answer itself is unusable (not a number, an empty box): no response to
  that problem can be judged, whatever it says.

Where a response's answer is (both kinds): a base model given a few-shot prompt and no stop
strings answers, then goes on with the next exemplar ("Question: ...", "Problem: ..."), whose
answers are not its own. So a response is read up to the first line that opens an exemplar
(``own_solution``), and a marker that ends a solution wins over what follows it: GSM8K's first
``####``; MATH's first "Final Answer: The final answer is ..." (Minerva's format, wcse's own
MATH prompt) and PRM800K's "# Answer" heading. Then the last ``\\boxed{}``; then a stated answer
("The final answer is X", "Answer: X"); then, for MATH, a closing "... is X." with X in math,
bold or a number; for GSM8K, the number of the closing sentence (``_closing_number``).

The kinds: :mod:`.gsm8k` and :mod:`.math` (its docstring lists the decisions taken against
math-verify behaviours); :mod:`.common` holds what both share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wcse.verify.answers import gsm8k, math
from wcse.verify.answers.common import last_boxed, own_solution
from wcse.verify.answers.gsm8k import extract_gsm8k
from wcse.verify.answers.math import extract_math, top_level_parts

__all__ = [
    "MODES",
    "STATUSES",
    "check",
    "extract_gsm8k",
    "extract_math",
    "last_boxed",
    "own_solution",
    "top_level_parts",
]

MODES = ("strict", "lenient")
STATUSES = ("ok", "no_answer", "unparsable", "error")


@dataclass(frozen=True)
class _Kind:
    """How one dataset kind finds the final answer, reads its gold answer and compares the two."""

    extract: Callable[[str], str | None]
    read_gold: Callable[[str], Any]  # raises ValueError for an unusable gold answer
    equal: Callable[[str, Any, bool], bool | None]  # None: the extracted answer is unreadable


_KINDS = {
    "gsm8k": _Kind(gsm8k.extract_gsm8k, gsm8k.read_gold, gsm8k.equal),
    "math": _Kind(math.extract_math, math.read_gold, math.equal),
    "functional_math": _Kind(math.extract_math, math.read_gold, math.equal),
}


def check(dataset_kind: str, response: str, gold: str, mode: str = "strict") -> tuple[bool, str | None, str]:
    """Judge one response: (correct, extracted answer, one of ``STATUSES``).

    The gold answer is read first, so a bad gold is an ``error`` for every response to it rather
    than counting against whichever model answered.
    """
    if dataset_kind not in _KINDS:
        raise ValueError(f"unknown dataset kind {dataset_kind!r}; known kinds: {sorted(_KINDS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known modes: {list(MODES)}")
    kind = _KINDS[dataset_kind]
    extracted = kind.extract(response)
    try:
        target = kind.read_gold(gold)
    except ValueError:
        return False, extracted, "error"
    if extracted is None:
        return False, None, "no_answer"
    correct = kind.equal(extracted, target, mode == "strict")
    if correct is None:
        return False, extracted, "unparsable"
    return correct, extracted, "ok"
