"""GSM8K: the final number of a response and its exact comparison with the gold answer.

GSM8K answers are numbers, compared exactly as fractions (never as float text); a ``####`` or
boxed answer written as arithmetic ("2^3", "20 + 30 = 50") is evaluated exactly within bounds,
never read by its first number.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from wcse.verify.answers.common import PLAIN_TEXT, last_boxed, own_solution

# A number as written in prose: optional sign before or after a "$", thousands commas, decimals,
# an optional "/denominator". The lookbehind keeps "3-4" from reading as -4, "1.5" from yielding
# a second number "5" and "2/3" from yielding "3".
_NUMBER = re.compile(
    r"(?<![\d.,/])(-?)(?:\\?\$\s*)?(-?)(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:/(0*[1-9]\d*)(?![\d.]))?"
)
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
# Arithmetic in a GSM8K answer ("2^3", "5 \times 3 = 15"), after _ARITHMETIC_TEXT: tokens, and the
# bounds that keep its evaluation cheap (10^10^10 is rejected, never computed).
_ARITHMETIC_TEXT = (
    (re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])|[×·∗]"), "*"),
    (re.compile(r"\\div(?![A-Za-z])|÷"), "/"),
    (re.compile(r"\\(?:left|right)(?![A-Za-z])|\\?\$"), ""),
    (re.compile(r"(?<=\d)\s*x\s*(?=\d)"), "*"),  # "3 x 4"
    (re.compile(r"(\d),(?=\d{3}(?!\d))"), r"\1"),
)
_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+|\*\*|[-+*/^()={}])")
_MAX_TOKENS, _MAX_BITS = 64, 4096
# Words after which a number in a closing sentence is circumstance, not the answer ("in 4 weeks").
_PREPOSITIONS = frozenset(
    "in after for from to by at within over per each every than with on until during before".split()
)
_COPULAS = frozenset("is are was were be been equals equal total totals makes make".split())
_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
        " sixteen seventeen eighteen nineteen twenty".split()
    )
} | {word: 10 * (i + 3) for i, word in enumerate("thirty forty fifty sixty seventy eighty ninety".split())}
_NUMBER_WORD = re.compile(
    r"(?<![\w-])("
    + "|".join(_NUMBER_WORDS)
    + r")(?:-(one|two|three|four|five|six|seven|eight|nine))?(?![\w-])",
    re.IGNORECASE,
)
# "one" is a pronoun as often as a number: not in "each one", "no one", "one of them".
_PRONOUN_ONE = re.compile(
    r"(?:\b(?:each|every|no|any|some|the|this|that|which|another)\s+one\b|\bone\s+(?:of|another)\b)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_PREVIOUS_WORD = re.compile(r"([A-Za-z]+)\W*$")
# "the answer is", "The answer (arabic numerals) is", "Answer:", GSM8K's "A: 18"
_GSM8K_STATED = re.compile(
    r"\banswer\b[^.\n]{0,30}?(?:\bis\b|:|=)|^[ \t*#]*A\s*:", re.IGNORECASE | re.MULTILINE
)


def _format_decimal(value: Decimal) -> str:
    """Canonical text of a number: no exponent, no trailing zeros, no "-0" ("72.0" -> "72")."""
    value = value.normalize()
    if value == value.to_integral_value():
        return str(int(value))
    return format(value, "f")


def _format_fraction(value: Fraction) -> str:
    """A decimal where it has one ("5/2" -> "2.5"), else "p/q"."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return _format_decimal(Decimal(value.numerator) / value.denominator) if denominator == 1 else str(value)


def _read_number(match: re.Match[str]) -> str:
    """Canonical text of a ``_NUMBER`` match: a decimal, or "p/q" where it was written as a fraction."""
    value = Decimal(match.group(3).replace(",", ""))
    if "-" in match.group(1) + match.group(2):
        value = -value
    if match.group(4):
        return str(Fraction(value) / int(match.group(4)))
    return _format_decimal(value)


class _Arithmetic:
    """Exact evaluation of + - * / ^ and brackets over fractions, with bounded powers."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.at = tokens, 0

    def value(self) -> Fraction:
        result = self._sum()
        if self.at != len(self.tokens):
            raise ValueError("trailing tokens")
        return result

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> str:
        if self.at >= len(self.tokens):
            raise ValueError("unexpected end")
        self.at += 1
        return self.tokens[self.at - 1]

    def _sum(self) -> Fraction:
        result = self._product()
        while self._peek() in ("+", "-"):
            result = result + self._product() if self._take() == "+" else result - self._product()
        return result

    def _product(self) -> Fraction:
        result = self._unary()
        while self._peek() in ("*", "/"):
            result = result * self._unary() if self._take() == "*" else result / self._unary()
        return result

    def _unary(self) -> Fraction:
        if self._peek() in ("-", "+"):
            return -self._unary() if self._take() == "-" else self._unary()
        base = self._atom()
        if self._peek() in ("^", "**"):
            self._take()
            exponent = self._unary()  # right-associative: 10^10^10 is 10^(10^10)
            bits = max(base.numerator.bit_length(), base.denominator.bit_length(), 1)
            if exponent.denominator != 1 or abs(exponent) * bits > _MAX_BITS:
                raise ValueError("power out of bounds")
            return base ** int(exponent)
        return base

    def _atom(self) -> Fraction:
        token = self._take()
        if token in ("(", "{"):
            result = self._sum()
            if self._take() not in (")", "}"):
                raise ValueError("unbalanced")
            return result
        return Fraction(token)


def _read_value(scope: str) -> str | None:
    """The first number in ``scope``; where it starts arithmetic ("2^3", "20 + 30 = 50"), the value
    after the last "=", evaluated exactly, or the arithmetic's text where it cannot be evaluated
    within bounds (no number reads it: ``unparsable``). "1/2" and "\\frac{1}{2}" are one number."""
    text = _LATEX_FRACTION.sub(r"\1/\2", scope)
    for pattern, replacement in _ARITHMETIC_TEXT:
        text = pattern.sub(replacement, text)
    first = _NUMBER.search(text)
    if first is None:
        return None
    at = first.start()
    while at > 0 and text[at - 1] in "({ \t":
        at -= 1
    tokens: list[str] = []
    while len(tokens) <= _MAX_TOKENS and (token := _TOKEN.match(text, at)):
        if tokens and _is_operand(tokens[-1]) and _is_operand(token.group(1)):
            break  # "#### 7\n8": two numbers in a row end the arithmetic
        tokens.append(token.group(1))
        at = token.end()
    while tokens and not _is_operand(tokens[-1]) and tokens[-1] not in ")}=":
        tokens.pop()  # "#### 72 -": a dangling operator is punctuation
    if tokens and tokens[-1] == "=":  # "7500 + 1800 =" and no result: not the value it should have had
        return "".join(tokens)
    if "=" in tokens:
        tokens = tokens[len(tokens) - tokens[::-1].index("=") :]
    plain = _NUMBER.fullmatch("".join(t for t in tokens if t not in "(){}"))
    if plain:  # one number, "-5" or "3/4"
        return _read_number(plain)
    try:
        return _format_fraction(_Arithmetic(tokens).value())
    except (ValueError, ZeroDivisionError):
        return "".join(tokens)


def _is_operand(token: str) -> bool:
    return token[0].isdigit() or token[0] == "."


def extract_gsm8k(text: str) -> str | None:
    """The answer of a GSM8K response (see ``own_solution``): after the first ``####``; else in the
    last ``\\boxed{}``; else a stated answer ("the answer is 18", "A: 18"); else the number of the
    closing sentence (``_closing_number``).

    The first number after ``####`` wins ("#### 72 clips. I checked 5 times." gives 72); a
    ``####`` with no number after it is a malformed answer, so there is no fallback then. A box
    is taken because chat models box GSM8K answers and then often write more numbers after it.
    """
    text = own_solution(text, "gsm8k")
    marker = text.find("####")
    if marker >= 0:
        return _read_value(text[marker + 4 :])
    if (boxed := last_boxed(text)) is not None:
        return _read_value(boxed)
    for stated in reversed(list(_GSM8K_STATED.finditer(text))):  # its calculation may run over lines
        if (value := _read_value(text[stated.end() : stated.end() + 300])) is not None:
            return value
    return _closing_number(text)


def _closing_number(text: str) -> str | None:
    """The number that the last sentence with a number states ("He spends 34 hours studying in 4 weeks."
    gives 34, "Three trucks are needed." 3): after its last "=", else the first after a copula
    ("... which is 20"), else the first that no preposition governs ("in 4 weeks"), else the last."""
    for sentence in reversed(_SENTENCE_END.split(text)):
        sentence = _LATEX_FRACTION.sub(r"\1/\2", sentence)
        if "=" in sentence and (after := _NUMBER.search(sentence.rpartition("=")[2])):
            return _read_number(after)
        numbers = list(_NUMBER.finditer(sentence))
        if not numbers:
            words = [w for w in _NUMBER_WORD.finditer(sentence) if not _pronoun(sentence, w)]
            if words:
                return str(
                    _NUMBER_WORDS[words[0].group(1).lower()]
                    + (_NUMBER_WORDS[words[0].group(2).lower()] if words[0].group(2) else 0)
                )
            continue
        governed: list[tuple[re.Match[str], str]] = []
        for m in numbers:  # the end of a range ("from 3-4") is governed like its start
            ranged = governed and not sentence[governed[-1][0].end() : m.start()].strip(" -")
            governed.append((m, governed[-1][1] if ranged else _previous_word(sentence, m.start())))
        free = [m for m, word in governed if word not in _PREPOSITIONS]
        stated = [m for m, word in governed if word in _COPULAS]
        return _read_number((stated or free or numbers[-1:])[0])
    return None


def _previous_word(text: str, end: int) -> str:
    word = _PREVIOUS_WORD.search(text, max(0, end - 40), end)
    return word.group(1).lower() if word else ""


def _pronoun(sentence: str, word: re.Match[str]) -> bool:
    return word.group(1).lower() == "one" and any(
        m.start() <= word.start() < m.end() for m in _PRONOUN_ONE.finditer(sentence)
    )


def read_gold(gold: str) -> Fraction:
    try:
        return Fraction(gold.translate(PLAIN_TEXT).strip().lstrip("$").replace(",", ""))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"gold answer {gold!r} is not a number") from None


def equal(extracted: str, gold: Fraction, strict: bool) -> bool | None:
    """Exact rational equality (never float text): "1,000.50" equals "1000.5", "0.5" equals "1/2".
    None for arithmetic that could not be evaluated."""
    try:
        return Fraction(extracted) == gold
    except (ValueError, ZeroDivisionError):
        return None
