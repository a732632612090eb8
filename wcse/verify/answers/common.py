"""What both graders share: where a response's own solution ends, the Unicode dashes read as
minus signs, and the last ``\\boxed{}``."""

from __future__ import annotations

import re

# U+2212 minus, hyphens, figure/en/em dashes, small and full-width hyphen-minus: all "-" (a model
# that writes "−5" means -5; reading it as 5 grades a wrong sign right). No-break spaces are spaces.
PLAIN_TEXT = str.maketrans(
    dict.fromkeys("\u2212\u2010\u2011\u2012\u2013\u2014\ufe63\uff0d", "-")
    | dict.fromkeys("\u00a0\u2009\u202f", " ")
)
# A line that opens the next few-shot exemplar (wcse's and lm-eval's prompts; "Q:" chain-of-thought).
_RUN_ON = {"gsm8k": re.compile(r"\n[ \t]*(?:Question|Q)\s*:"), "math": re.compile(r"\n[ \t]*Problem\s*:")}


def own_solution(text: str, kind: str) -> str:
    """``text`` without unicode dashes, up to the first line that opens another few-shot exemplar
    ("\\nProblem:" for MATH, "\\nQuestion:" / "\\nQ:" for GSM8K) after some text of its own.

    What follows belongs to other problems: its answers must never count (a run-on's "#### 2"
    could pass for a gold 2). A response that itself starts with "Problem:" keeps it.
    """
    text = text.translate(PLAIN_TEXT)
    for opening in _RUN_ON["gsm8k" if kind == "gsm8k" else "math"].finditer(text):
        if text[: opening.start()].strip():
            return text[: opening.start()]
    return text


BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}``, nested braces included.

    ``\\boxed 5`` (no braces, as in a few MATH solutions) yields the token after it. An empty box
    yields "", and a last box that is never closed (a truncated generation) yields None rather
    than an earlier box.
    """
    boxes = list(BOX.finditer(text))
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
