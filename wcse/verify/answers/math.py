"""MATH (and Functional MATH): the final LaTeX answer of a response and its comparison with the
gold answer by math-verify.

MATH answers are LaTeX, compared with math-verify (plain numbers
on both sides are compared exactly without it: the same verdicts, a fraction of the time).
Unicode minus signs and dashes are minus signs in both (``−5`` is -5, not 5). Modes:

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
  turns unreadable answers into "ok" verdicts. Unparsable text is never compared as strings, and
  a phrase is never compared at all (math-verify reads "the product of 3 and 5" as a product of
  single-letter symbols).
* Variables matter (``verify(strict=True)``): matching them by position would pass "2y+3"
  for "2x+3".
* Clock times are compared as text, with their "a.m."/"p.m." ("4:30 p.m." is "4:30 \\text{ pm}").

math-verify's own timeouts use ``signal.alarm``, which raises inside threads: they are turned off
here (``parsing_timeout=None``, ``timeout_seconds=None``) and callers enforce time limits by
running checks in worker processes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify

from wcse.verify.answers.common import BOX, PLAIN_TEXT, last_boxed, own_solution

# Minerva's closing line: "Final Answer: The final answer is X. I hope it is correct." (either half).
_MINERVA = re.compile(
    r"final answer\s*:\s*the final answer is\b|the final answer is\b(?=[^\n]*I hope it is correct)",
    re.IGNORECASE,
)
_HOPE = re.compile(r"\s*I hope it is correct.*", re.IGNORECASE | re.DOTALL)
_ANSWER_HEADING = re.compile(r"^[ \t]*#+[ \t]*Answer[ \t]*:?[ \t]*$", re.IGNORECASE | re.MULTILINE)  # PRM800K
# A stated answer: "The final answer is $x$", "Final Answer: x", "the answer is x", "**Answer:** x".
_FINAL_ANSWER = re.compile(
    r"final answer(?:\s*:|\s+is\s*:?)|\bthe answer is\s*:?|^[ \t#*]*answer[ \t*]*:",
    re.IGNORECASE | re.MULTILINE,
)
_DOLLAR = re.compile(r"(?<!\\)\$|\\[()\[\]]")  # inline-math delimiters; "\$36" is a dollar sign
_EMPHASIS = " \t\r*"  # markdown "**73**" around a stated answer (math-verify #76), and spaces
# A closing statement without a box: "... the degree of the polynomial is 15.", "... is **6**.",
# "... is $\frac{3}{4}$ square units." Only the last 300 characters are searched.
_CLOSING = re.compile(
    r"(?:\b(?:is|are|be|equals?)|=|:)\s*(\*\*[^*\n]{1,80}\*\*|\$\$?[^$]{1,200}\$\$?|\\\((?:(?!\\\)).){1,200}\\\)"
    r"|\\\[(?:(?!\\\]).){1,200}\\\]|-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?)([A-Za-z .]{0,30}?)[.!]?\s*$",
    re.DOTALL,
)
# Words after a closing value that make it part of a phrase ("is 5 more than x"), not a unit.
_PHRASE_TAIL = re.compile(
    r"\b(?:more|less|than|times|of|per|plus|minus|greater|smaller|fewer|larger)\b", re.I
)
# Prose in an answer: two or more lowercase words outside \text{} (math names and units aside).
_TEXT_GROUP = re.compile(
    r"\\(?:text(?:rm|bf|it|normal)?|mbox|mathrm|operatorname|(?:begin|end))\s*\{[^{}]*\}"
)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"(?<![A-Za-z])[a-z]{3,}(?![A-Za-z])")
_MATH_WORDS = frozenset(
    "and sin cos tan cot sec csc log exp max min gcd lcm mod det arcsin arccos arctan sinh cosh tanh lim"
    " inf sup deg sqrt".split()
)
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
    # "\text{4:30 p.m.}" and "4:30 \text{ p.m.}": a time and its a.m./p.m. out of \text (not a unit)
    (re.compile(r"\\(?:text(?:rm|normal)?|mbox|mathrm)\s*\{\s*([^{}]*\d:[0-5]\d[^{}]*?)\s*\}"), r"\1"),
    (
        re.compile(
            r"(\d:[0-5]\d)\s*(?:\\[,;! ]\s*)*\\(?:text(?:rm|normal)?|mbox|mathrm)\s*\{\s*([AaPp]\.?\s*[Mm]\.?)\s*\}"
        ),
        r"\1 \2",
    ),
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
# "9:24", "05:00" and "4:30 p.m." are clock times, compared as text: math-verify reads them as
# ratios (5:00 is 5/0, which equals nothing, and 10:30 equals 1:3). A ratio's second term rarely
# has two digits. The a.m./p.m. is kept, as "pm": math-verify cannot parse "\\text{1:03 pm}".
_CLOCK = re.compile(
    r"(?<![\d.:])0?(1?\d|2[0-3]):([0-5]\d)(:[0-5]\d)?(?:\s*([AaPp])\.?\s*[Mm](?![A-Za-z])\.?)?(?![\d.:])"
)


# Boxed LaTeX only (see the module docstring); math-verify's units rule is replaced by _strip_unit.
_LATEX_ONLY = (
    LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        )
    ),
)


# Plain numbers, compared without math-verify (see _plain_value): "-12.5", "-\frac{2}{3}", "\frac{-2}{3}", "3/4".
_PLAIN_VALUE = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
_PLAIN_FRACTION = re.compile(r"(-?)(?:\\[dt]?frac\{(-?)(\d+)\}\{(\d+)\}|(\d+)/(\d+))")


def extract_math(text: str) -> str | None:
    """The answer of a MATH response (see ``own_solution``): the first Minerva "Final Answer: The final
    answer is X" line; else the first PRM800K "# Answer" heading's line; else the last box (None
    when it is empty or unclosed); else the last "The final answer is X" / "the answer is X" /
    "Answer: X"; else a closing "... is X." with X in math, bold or a number.

    Inline-math dollars and markdown bold around a stated answer are dropped ("**Final Answer:**
    **73**"): math-verify cannot parse bold (issue #76).
    """
    text = own_solution(text, "math")
    if minerva := _MINERVA.search(text):
        return _stated(text[minerva.end() :])
    if heading := _ANSWER_HEADING.search(text):
        return _stated(text[heading.end() :])
    if BOX.search(text):
        return last_boxed(text) or None
    stated = list(_FINAL_ANSWER.finditer(text))
    if stated:
        return _stated(text[stated[-1].end() :])
    closing = _CLOSING.search(text, max(0, len(text.rstrip()) - 300))
    if closing is None or _PHRASE_TAIL.search(closing.group(2)):
        return None
    return _stated(closing.group(1))


def _stated(rest: str) -> str | None:
    """The answer at the start of ``rest`` (its first non-blank line), without Minerva's "I hope it is
    correct.", a sentence's full stop, bold or inline-math delimiters; a box in it is the answer."""
    line = rest.lstrip(" \t\r\n*").split("\n", 1)[0]
    line = _HOPE.sub("", line)
    if BOX.search(line):
        return last_boxed(line) or None
    answer = _DOLLAR.sub("", line.strip(_EMPHASIS)).strip(_EMPHASIS)
    while answer.endswith(".") and not answer.endswith("\\."):
        answer = answer[:-1].rstrip(_EMPHASIS)
    return answer or None


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
    answer = answer.translate(PLAIN_TEXT).strip()
    for pattern, replacement in _REWRITES:
        answer = pattern.sub(replacement, answer)
    return _CLOCK.sub(_clock_text, _strip_unit(_split_text_lists(answer)))


def _clock_text(match: re.Match[str]) -> str:
    hours, minutes, seconds, meridiem = match.groups()
    return f"\\text{{{hours}:{minutes}{seconds or ''}{meridiem.lower() + 'm' if meridiem else ''}}}"


def _is_prose(answer: str) -> bool:
    """Whether an extracted answer is a phrase ("the product of the roots"), not mathematics: two or
    more lowercase words outside ``\\text{}`` and LaTeX commands, once a trailing unit is dropped."""
    bare = _LATEX_COMMAND.sub(" ", _TEXT_GROUP.sub(" ", _strip_unit(answer)))
    return sum(word not in _MATH_WORDS for word in _WORD.findall(bare)) >= 2


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


@functools.lru_cache(maxsize=1 << 14)
def _plain_value(answer: str) -> tuple[Fraction, bool] | None:
    """The value of an answer that is a plain number once normalised ("25\\%", "10,\\!080", "5 cm",
    "-\\frac{2}{3}", "3/4"), and whether it is exact (no decimal point), else None. Two plain numbers
    are compared without math-verify's parser, as math-verify compares them: exact numbers exactly,
    a decimal within a tolerance (so only an exact match of a decimal is decided here)."""
    text = _THOUSANDS.sub(r"\1", _normalize(answer)).replace("{,}", "").replace(" ", "")
    if _PLAIN_VALUE.fullmatch(text):
        return Fraction(text), "." not in text
    fraction = _PLAIN_FRACTION.fullmatch(text)
    if fraction is None:
        return None
    sign, inner, numerator, denominator, slash_numerator, slash_denominator = fraction.groups()
    denominator = int(denominator or slash_denominator)
    if denominator == 0:
        return None
    return Fraction((-1) ** len(sign + (inner or "")) * int(numerator or slash_numerator), denominator), True


@dataclass(frozen=True)
class _MathGold:
    text: str
    value: tuple[Fraction, bool] | None  # a plain number (see _plain_value)

    @property
    def parsed(self) -> tuple[Any, ...]:
        return _parse_math(self.text)


def read_gold(gold: str) -> _MathGold:
    value = _plain_value(gold)
    if value is None and not _parse_math(gold):
        raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
    return _MathGold(gold, value)


def equal(extracted: str, gold: _MathGold, strict: bool) -> bool | None:
    """math-verify equivalence (None: the prediction is unreadable or a phrase); strict also matches
    part counts. Two plain numbers are equal exactly; unequal integers are different."""
    value = _plain_value(extracted)
    if value is not None and gold.value is not None:
        if value[0] == gold.value[0]:
            return True
        if value[1] and gold.value[1]:
            return False
    if _is_prose(extracted):
        return None
    predicted = _parse_math(extracted)
    if not predicted:
        return None
    if strict and top_level_parts(extracted) != top_level_parts(gold.text):
        return False
    # verify wraps anything but a list as one item, so the cached tuples go in as fresh lists.
    return verify(list(gold.parsed), list(predicted), timeout_seconds=None, strict=True)
