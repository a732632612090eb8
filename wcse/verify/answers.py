"""Final-answer extraction and equivalence for the real benchmarks (GSM8K, MATH, Functional MATH).

A verdict is ``(correct, extracted answer, status)``; the status says whether a comparison
took place at all, so a grader bug cannot hide as a wrong answer:

* ``ok``: the extracted answer was compared with the gold answer.
* ``no_answer``: nothing could be extracted (no number, no box, an empty or unclosed box).
* ``unparsable``: an answer was extracted but math-verify cannot read it as mathematics.
* ``error``: the gold answer itself is unusable (not a number, an empty box): no response to
  that problem can be judged, whatever it says.

GSM8K answers are numbers, compared exactly as fractions (never as float text). MATH answers
are LaTeX, compared with math-verify. Modes:

* ``strict`` (filtering training data) also requires the prediction to list as many top-level
  parts as the gold answer (see ``top_level_parts``), so a partial, padded or re-bracketed
  multi-part answer never passes ("1, 2, 2" for "1, 2"; "2, 5" or "\\{2, 5\\}" for the interval
  "(2, 5)"), while a set may still be written as a list ("2, 1" for "\\{1, 2\\}").
* ``lenient`` (evaluation) takes math-verify's verdict on the parts as they are.

Decisions shared by both modes, each a guard against a math-verify behaviour:

* Percent signs are notation and are dropped on both sides, as MATH's own grader does
  (MATH golds write "25\\%" and "25" for the same kind of question): "50" passes for
  "50\\%" but "0.5" does not. math-verify itself fails to parse a boxed "50\\%" at all and,
  where it does read a percentage, accepts both 50 and 0.5, which inflates coverage.
* math-verify's unit stripping is off: its unit list holds single letters and "ab", so "2ab",
  "2m" and "3t" would all pass for "2" or "3". Instead a trailing ``\\text{...}`` word or a
  common unit word after a number is dropped ("5\\text{ cm}^2", "12 inches").
* The gold answer is parsed boxed, so "1331 and 1728" is read as one two-element answer and
  is neither a subset nor a superset of "1728" (math-verify issue #47 reads an unboxed gold
  as alternatives, any one of which passes).
* Only LaTeX extraction is used on the boxed text: the number-in-prose extractor
  (``ExprExtractionConfig``) reads an unparsable "5 \\mid 10" as 10 and "x \\mapsto 5" as 5, which
  turns unreadable answers into "ok" verdicts. Unparsable text is never compared as strings.
* Variables matter (``verify(strict=True)``): matching them by position would pass "2y+3"
  for "2x+3".

math-verify's own timeouts use ``signal.alarm``, which raises inside threads: they are turned off
here (``parsing_timeout=None``, ``timeout_seconds=None``) and callers enforce time limits by
running checks in worker processes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify

MODES = ("strict", "lenient")
STATUSES = ("ok", "no_answer", "unparsable", "error")

# A number as written in prose: optional sign before or after a "$", thousands commas, decimals,
# an optional "/denominator". The lookbehind keeps "3-4" from reading as -4, "1.5" from yielding
# a second number "5" and "2/3" from yielding "3".
_NUMBER = re.compile(
    r"(?<![\d.,/])(-?)(?:\\?\$\s*)?(-?)(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:/(0*[1-9]\d*)(?![\d.]))?"
)
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# "The final answer is $x$" (Minerva's format) and "Final Answer: x"; not a bare "final answer".
_FINAL_ANSWER = re.compile(r"final answer(?:\s*:|\s+is\s*:?)\s*", re.IGNORECASE)
_INLINE_MATH = re.compile(r"\$+((?:\\.|[^$\\])*)\$")  # "$\$36$": an escaped dollar does not close it
_EMPHASIS = " \t\r*"  # markdown "**73**" around a stated answer (math-verify #76), and spaces
# "10,080" and "10,\!080" are one number, not the parts "10" and "080".
_THOUSANDS = re.compile(r"(\d),(?:\\!\s*)?(?=\d{3}(?!\d))")
# math-verify reads "a and b" / "a \text{ or } b" as a set, like "a, b"; count those words as commas.
_CONJUNCTION = re.compile(r"\\text\{\s*(?:and|or)\s*\}|\b(?:and|or)\b")
_PLUS_MINUS = re.compile(r"\\(?:pm|mp)(?![A-Za-z])")  # "1 \pm \sqrt{2}" is two answers
_SET_BRACES = re.compile(r"\\\{(.*)\\\}", re.DOTALL)
_OPEN, _CLOSE = "([{", ")]}"
# "\text{A, C}" lists two choices, like "\text{A}, \text{C}"; a comma before a digit stays.
_TEXT_LIST = re.compile(r"\\text\{([^{}]*,[^{}]*)\}")
_TEXT_COMMA = re.compile(r",(?!\d)")

# Rewrites applied to both answers before math-verify, each for something it misreads.
_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\\?%|\bpercent(?:age)?\b"), ""),  # see the module docstring
    (re.compile(r"(?<!\\)[.,;]$"), ""),  # "30^\circ." / "\text{(E)},": a sentence's punctuation
    (re.compile(r"^\s*\\approx\s*"), ""),  # "\approx 8.24": the stated value
    (re.compile(r"^\s*-?\d+(?:\.\d+)?\s*=\s*(?=-?\d)"), ""),  # "0.56 = 56\%": one value in two forms
    (re.compile(r"(\d),\\!\s*(?=\d{3})"), r"\1"),  # "\frac{1}{29,\!322}": parsed only at top level
    (re.compile(r"(\d)\s*\\!\s*:\s*\\!\s*(?=\d)"), r"\1:"),  # MATH's clock times: "05\!:\!00"
    (re.compile(r"\\varnothing(?![A-Za-z])"), r"\\emptyset"),  # read as a symbol named "varnothing"
    (re.compile(r"\\phantom\s*(?:\{[^{}]*\}|\S)"), ""),  # invisible spacing in matrices
    # "\frac\pi 2": math-verify braces only digit arguments and splits "\pi" after the backslash
    (re.compile(r"\\([dt]?frac)\s*(\\[A-Za-z]+|[^\s{}\\])\s*(\\[A-Za-z]+|[^\s{}\\])"), r"\\\1{\2}{\3}"),
    # "1.5e3" is read as 1.5 * e * 3
    (re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?![\w.])"), r"\1\\times 10^{\2}"),
)
# A unit after a value: any trailing \text{words} (MATH's convention), or a common bare unit word.
_UNIT_TEXT = re.compile(
    r"\\(?:text(?:rm|normal)?|mbox)\s*\{\s*[A-Za-z][A-Za-z ./]*\}(?:\s*\^\s*\{?\d\}?)?\s*"
)
_UNIT_WORD = re.compile(
    r"(?<=\d)\s+(?:(?:square|sq\.?|cubic)\s+)?(?:units?|cm|mm|km|kg|mph|inch(?:es)?|feet|foot|ft|yards?"
    r"|miles?|meters?|metres?|degrees?|dollars?|cents?|seconds?|minutes?|hours?|days?|weeks?|years?)"
    r"(?:\s*\^\s*\{?\d\}?)?\s*$"
)
_VALUE_END = tuple("0123456789}).]!")  # a unit must follow a value ("5!" is one) ...
_TEXT_END = re.compile(r"\\(?:text(?:rm|normal)?|mbox)\s*\{[^{}]*\}\s*$")  # ... not "\text{ and }"
# "9:24" and "05:00" are clock times, compared as text: math-verify reads them as ratios (5:00 is
# 5/0, which equals nothing, and 10:30 equals 1:3). A ratio's second term rarely has two digits.
_CLOCK = re.compile(r"(?<![\d.:])0?(1?\d|2[0-3]):([0-5]\d)(:[0-5]\d)?(?![\d.:])")

# Boxed LaTeX only (see the module docstring); math-verify's units rule is replaced by _strip_unit.
_LATEX_ONLY = (
    LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        )
    ),
)


def _format_decimal(value: Decimal) -> str:
    """Canonical text of a number: no exponent, no trailing zeros, no "-0" ("72.0" -> "72")."""
    value = value.normalize()
    if value == value.to_integral_value():
        return str(int(value))
    return format(value, "f")


def _read_number(match: re.Match[str]) -> str:
    """Canonical text of a ``_NUMBER`` match: a decimal, or "p/q" where it was written as a fraction."""
    value = Decimal(match.group(3).replace(",", ""))
    if "-" in match.group(1) + match.group(2):
        value = -value
    if match.group(4):
        return str(Fraction(value) / int(match.group(4)))
    return _format_decimal(value)


def extract_gsm8k(text: str) -> str | None:
    """The number after the last ``####``; else the first number in the last ``\\boxed{}``; else the
    last number in ``text``.

    The first number after ``####`` wins ("#### 72 clips. I checked 5 times." gives 72); a
    ``####`` with no number after it is a malformed answer, so there is no fallback then. A box
    is taken because chat models box GSM8K answers and then often write more numbers after it.
    "1/2" and "\\frac{1}{2}" are one number, not "1" (which would pass for a gold answer of 1).
    """
    marker = text.rfind("####")
    if marker >= 0:
        scope, pick = text[marker + 4 :], 0
    elif (boxed := last_boxed(text)) is not None:
        scope, pick = boxed, 0
    else:
        scope, pick = text, -1
    matches = list(_NUMBER.finditer(_LATEX_FRACTION.sub(r"\1/\2", scope)))
    return _read_number(matches[pick]) if matches else None


def _gsm8k_gold(gold: str) -> Fraction:
    try:
        return Fraction(gold.strip().lstrip("$").replace(",", ""))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"gold answer {gold!r} is not a number") from None


def _gsm8k_equal(extracted: str, gold: Fraction, strict: bool) -> bool:
    """Exact rational equality (never float text): "1,000.50" equals "1000.5", "0.5" equals "1/2"."""
    return Fraction(extracted) == gold


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}``, nested braces included.

    ``\\boxed 5`` (no braces, as in a few MATH solutions) yields the token after it. An empty box
    yields "", and a last box that is never closed (a truncated generation) yields None rather
    than an earlier box.
    """
    boxes = list(_BOX.finditer(text))
    if not boxes:
        return None
    start = boxes[-1].end()
    while start < len(text) and text[start].isspace():
        start += 1
    if not text.startswith("{", start):
        return re.split(r"[\s$]", text[start:], maxsplit=1)[0]
    depth = 0
    for i in range(start, len(text)):
        depth += (text[i] == "{") - (text[i] == "}")
        if depth == 0:
            return text[start + 1 : i].strip()
    return None


def extract_boxed(text: str) -> str | None:
    """The last boxed answer (None when it is empty); without any box, "The final answer is X".

    Markdown bold around a stated answer ("**Final Answer:** **73**") is dropped: math-verify
    cannot parse it (issue #76).
    """
    if _BOX.search(text):
        return last_boxed(text) or None
    stated = list(_FINAL_ANSWER.finditer(text))
    if not stated:
        return None
    rest = text[stated[-1].end() :].split("\n", 1)[0].strip(_EMPHASIS)
    math = _INLINE_MATH.match(rest)
    answer = math.group(1) if math else rest.rstrip(".").strip(_EMPHASIS)
    return answer.strip() or None


def _split_top_level(text: str) -> tuple[list[str], bool]:
    """The comma-separated parts outside brackets, and whether the brackets balance."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    balanced = True
    for char in text:
        depth += (char in _OPEN) - (char in _CLOSE)
        balanced = balanced and depth >= 0
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()], balanced and depth == 0


def _split_text_lists(answer: str) -> str:
    return _TEXT_LIST.sub(
        lambda m: ", ".join(f"\\text{{{item}}}" for item in _TEXT_COMMA.split(m.group(1))), answer
    )


def top_level_parts(answer: str) -> int:
    """How many parts a (LaTeX) answer lists: commas or and/or outside brackets, or the elements
    of an answer that is one set.

    "(3, \\frac{\\pi}{2})" and "[-2, 7]" are one part (a point, an interval); "3, 5, 7",
    "\\{3, 5, 7\\}", "\\text{A, C}", "1331 and 1728" and "1 \\pm \\sqrt{2}" are several, so a set may be
    written as a list.
    """
    text = _CONJUNCTION.sub(",", _split_text_lists(_THOUSANDS.sub(r"\1", answer)))
    text = text.replace("\\langle", "(").replace("\\rangle", ")").replace("\\left", "").replace("\\right", "")
    parts, _ = _split_top_level(text)
    inner = _SET_BRACES.fullmatch(text.strip())
    if inner:
        elements, balanced = _split_top_level(inner.group(1))
        parts = elements if balanced else parts
    return sum(1 + bool(_PLUS_MINUS.search(part)) for part in parts)


def _strip_unit(answer: str) -> str:
    """``answer`` without a trailing unit, where what is left still ends in a value.

    The \\text unit is found from its last command, not by a regex search: a search for it, like
    math-verify's own patterns, takes quadratic time on a long run of spaces.
    """
    text_unit = max(answer.rfind("\\text"), answer.rfind("\\mbox"))
    if text_unit >= 0 and _UNIT_TEXT.fullmatch(answer, text_unit):
        value = answer[:text_unit]
    elif word_unit := _UNIT_WORD.search(answer):
        value = answer[: word_unit.start()]
    else:
        return answer
    for spacing in ("\\,", "\\;", "\\!", "\\"):  # "1.85\ \text{USD}"
        value = value.rstrip().removesuffix(spacing)
    value = value.rstrip()
    return value if value.endswith(_VALUE_END) and not _TEXT_END.search(value) else answer


def _normalize(answer: str) -> str:
    """``answer`` with what math-verify misreads rewritten; each rewrite names what it guards against."""
    answer = answer.strip()
    for pattern, replacement in _REWRITES:
        answer = pattern.sub(replacement, answer)
    return _CLOCK.sub(r"\\text{\1:\2\3}", _strip_unit(_split_text_lists(answer)))


@functools.lru_cache(maxsize=1 << 14)
def _parse_math(answer: str) -> tuple[Any, ...]:
    """math-verify's reading of a boxed answer; empty when it cannot read it.

    Cached because a gold answer is checked against many samples, and samples repeat answers;
    the objects are sympy's immutable ones, and a tuple so no caller can change a cached result.
    """
    boxed = "\\boxed{" + _normalize(answer) + "}"
    return tuple(
        parse(boxed, extraction_config=_LATEX_ONLY, fallback_mode="no_fallback", parsing_timeout=None)
    )


@dataclass(frozen=True)
class _MathGold:
    text: str
    parsed: tuple[Any, ...]


def _math_gold(gold: str) -> _MathGold:
    parsed = _parse_math(gold)
    if not parsed:
        raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
    return _MathGold(gold, parsed)


def _math_equal(extracted: str, gold: _MathGold, strict: bool) -> bool | None:
    """math-verify equivalence (None: the prediction is unreadable); strict also matches part counts."""
    predicted = _parse_math(extracted)
    if not predicted:
        return None
    if strict and top_level_parts(extracted) != top_level_parts(gold.text):
        return False
    # verify wraps anything but a list as one item, so the cached tuples go in as fresh lists.
    return verify(list(gold.parsed), list(predicted), timeout_seconds=None, strict=True)


@dataclass(frozen=True)
class _Kind:
    """How one dataset kind finds the final answer, reads its gold answer and compares the two."""

    extract: Callable[[str], str | None]
    read_gold: Callable[[str], Any]  # raises ValueError for an unusable gold answer
    equal: Callable[[str, Any, bool], bool | None]  # None: the extracted answer is unreadable


_KINDS = {
    "gsm8k": _Kind(extract_gsm8k, _gsm8k_gold, _gsm8k_equal),
    "math": _Kind(extract_boxed, _math_gold, _math_equal),
    "functional_math": _Kind(extract_boxed, _math_gold, _math_equal),
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
