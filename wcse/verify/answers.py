"""Final-answer extraction and equivalence for the real benchmarks (GSM8K, MATH, Functional MATH).

GSM8K answers are numbers and are compared exactly as decimals. MATH answers are LaTeX and are
compared with math-verify, which is lenient by nature (it reads "1, 2" and "2, 1" as one set).
``strict`` mode, used to filter training data, additionally requires the prediction to have as
many top-level parts as the gold answer, so a partial or padded multi-part answer never passes.

math-verify's own timeouts use ``signal.alarm``, which raises inside threads: they are turned off
here (``parsing_timeout=None``, ``timeout_seconds=None``) and callers enforce time limits by
running checks in worker processes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from math_verify import parse, verify

MODES = ("strict", "lenient")

# A number as written in prose: optional sign before or after a "$", thousands commas, decimals.
# The lookbehind keeps "3-4" from reading as -4 and "1.5" from yielding a second number "5".
_NUMBER = re.compile(r"(?<![\d.])(-?)(?:\$\s*)?(-?)(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)")
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_FINAL_ANSWER = re.compile(r"final answer is\s*:?\s*", re.IGNORECASE)
# "10,080" and "10,\!080" are one number, not the parts "10" and "080".
_THOUSANDS = re.compile(r"(\d),(?:\\!\s*)?(?=\d{3}(?!\d))")
# math-verify reads "a and b" / "a \text{ or } b" as a set, like "a, b"; count those words as commas.
_CONJUNCTION = re.compile(r"\\text\{\s*(?:and|or)\s*\}|\b(?:and|or)\b")
_OPEN, _CLOSE = "([{", ")]}"


def _format_decimal(value: Decimal) -> str:
    """Canonical text of a number: no exponent, no trailing zeros, no "-0" ("72.0" -> "72")."""
    value = value.normalize()
    if value == value.to_integral_value():
        return str(int(value))
    return format(value, "f")


def extract_gsm8k(text: str) -> str | None:
    """The number after the last ``####`` if there is one, else the last number in ``text``.

    The first number after ``####`` wins ("#### 72 clips. I checked 5 times." gives 72); a
    ``####`` with no number after it is a malformed answer, so there is no fallback then.
    """
    marker = text.rfind("####")
    matches = list(_NUMBER.finditer(text[marker + 4 :] if marker >= 0 else text))
    if not matches:
        return None
    match = matches[0] if marker >= 0 else matches[-1]
    value = Decimal(match.group(3).replace(",", ""))
    return _format_decimal(-value if "-" in (match.group(1) + match.group(2)) else value)


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
    """The last boxed answer (None when it is empty); without any box, "The final answer is X"."""
    if _BOX.search(text):
        return last_boxed(text) or None
    stated = list(_FINAL_ANSWER.finditer(text))
    if not stated:
        return None
    rest = text[stated[-1].end() :]
    if rest.startswith("$"):
        answer = rest.lstrip("$").split("$", 1)[0]
    else:
        answer = rest.split("\n", 1)[0].rstrip().rstrip(".")
    return answer.strip() or None


def top_level_parts(answer: str) -> int:
    """How many parts a (LaTeX) answer lists: commas or and/or outside any brackets.

    "(3, \\frac{\\pi}{2})" and "[-2, 7]" are one part; "3, 5, 7" and "1331 and 1728" are several.
    """
    text = _CONJUNCTION.sub(",", _THOUSANDS.sub(r"\1", answer))
    text = text.replace("\\langle", "(").replace("\\rangle", ")")
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += (char in _OPEN) - (char in _CLOSE)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return sum(1 for part in parts if part.strip())


def _gsm8k_equal(extracted: str, gold: str, strict: bool) -> bool:
    """Exact decimal equality (never float text): "1,000.50" equals "1000.5"."""
    try:
        target = Decimal(gold.strip().lstrip("$").replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"gold answer {gold!r} is not a number") from None
    return Decimal(extracted) == target


def _math_equal(extracted: str, gold: str, strict: bool) -> bool:
    """math-verify equivalence of the boxed answers; strict also matches the part count."""
    gold_parsed = parse("$\\boxed{" + gold + "}$", parsing_timeout=None)
    if not gold_parsed:
        raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
    if strict and top_level_parts(extracted) != top_level_parts(gold):
        return False
    predicted = parse("$\\boxed{" + extracted + "}$", parsing_timeout=None)
    return verify(gold_parsed, predicted, timeout_seconds=None)


# dataset kind -> (extract the final answer from a response, compare it with the gold answer)
_KINDS: dict[str, tuple[Callable[[str], str | None], Callable[[str, str, bool], bool]]] = {
    "gsm8k": (extract_gsm8k, _gsm8k_equal),
    "math": (extract_boxed, _math_equal),
    "functional_math": (extract_boxed, _math_equal),
}


def check(dataset_kind: str, response: str, gold: str, mode: str = "strict") -> tuple[bool, str | None, str]:
    """Judge one response: (correct, extracted answer, status "ok" / "no_answer" / "error").

    "error" means the comparison itself failed (e.g. an unreadable gold answer): such a sample
    is counted wrong but stays distinguishable from a model that gave no answer.
    """
    if dataset_kind not in _KINDS:
        raise ValueError(f"unknown dataset kind {dataset_kind!r}; known kinds: {sorted(_KINDS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known modes: {list(MODES)}")
    extract, equal = _KINDS[dataset_kind]
    extracted = extract(response)
    if extracted is None:
        return False, None, "no_answer"
    try:
        return equal(extracted, gold, mode == "strict"), extracted, "ok"
    except (ValueError, ArithmeticError):
        return False, extracted, "error"
