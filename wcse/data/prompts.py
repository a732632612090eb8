"""Prompts, versioned files: ``wcse/data/prompts/<prompt_id>.yaml``.

Sampling uses a few-shot prompt for pretrained (non-instruction) models, as the paper does
(4-shot MATH, 8-shot GSM8K); finetuning and evaluation use the zero-shot form of the same
template, so a finetuned model is tested the way it was trained. The exemplars are fixed in the
file, copied from the dataset's training split (so their licence is the data's), rather than
picked at run time, so a prompt is something to read, review and cite. The file's ``version``
enters the sampling params and with them every sample's key and record: a changed prompt never
reuses samples made with the old one.

Files are read with PyYAML, not OmegaConf, which would take the ``${answer}$`` of a LaTeX
answer template for an interpolation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wcse.records import Problem

PROMPTS_DIR = Path(__file__).with_name("prompts")
KEYS = ("version", "description", "source", "shots", "question", "answer", "exemplars")
EXEMPLAR_KEYS = ("id", "question", "solution", "answer")


@dataclass(frozen=True)
class Prompt:
    """One prompt file, validated."""

    id: str
    version: str
    description: str
    source: str  # where the exemplars come from, and their licence
    shots: int
    question: str  # format string with {question}
    answer: str  # format string with {solution} and {answer}: how an exemplar's solution reads
    exemplars: tuple[Problem, ...]


def known() -> list[str]:
    """The ids of the prompt files."""
    return sorted(path.stem for path in PROMPTS_DIR.glob("*.yaml"))


@functools.cache
def template(prompt_id: str) -> Prompt:
    """The prompt ``prompt_id``, loaded once per process."""
    if prompt_id not in known():
        raise ValueError(f"dataset.prompt={prompt_id!r}: unknown prompt; known: {known()}")
    return load(PROMPTS_DIR / f"{prompt_id}.yaml")


def load(path: Path) -> Prompt:
    """Read and validate a prompt file; an error names the file and what is wrong."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    where = f"{path}: "
    if not isinstance(raw, dict):
        raise ValueError(f"{where}not a mapping")
    _check_keys(raw, KEYS, where)
    for key in ("version", "description", "source", "question", "answer"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise ValueError(f"{where}{key!r} must be a non-empty string")
    if not isinstance(raw["shots"], int) or raw["shots"] < 0:
        raise ValueError(f"{where}'shots' must be a non-negative integer")
    if not isinstance(raw["exemplars"], list) or raw["shots"] != len(raw["exemplars"]):
        raise ValueError(f"{where}'shots' is {raw['shots']} but 'exemplars' is not a list of that many")
    if "{question}" not in raw["question"]:
        raise ValueError(f"{where}'question' must contain {{question}}")
    try:  # a stray brace would otherwise fail only when the first prompt is rendered
        raw["question"].format(question="")
        raw["answer"].format(solution="", answer="")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"{where}bad template ({err!r}): use only {{question}}, {{solution}}, {{answer}}"
        ) from None
    exemplars = []
    for i, row in enumerate(raw["exemplars"]):
        if not isinstance(row, dict):
            raise ValueError(f"{where}exemplar {i} is not a mapping")
        _check_keys(row, EXEMPLAR_KEYS, f"{where}exemplar {i}: ")
        if not all(isinstance(row[k], str) for k in EXEMPLAR_KEYS):
            raise ValueError(f"{where}exemplar {i}: every field must be a string")
        exemplars.append(
            Problem(id=row["id"], question=row["question"], answer=row["answer"], solution=row["solution"])
        )
    ids = [e.id for e in exemplars]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}exemplar ids repeat: {ids}")
    return Prompt(
        id=path.stem,
        version=raw["version"],
        description=raw["description"],
        source=raw["source"],
        shots=raw["shots"],
        question=raw["question"],
        answer=raw["answer"],
        exemplars=tuple(exemplars),
    )


def _check_keys(row: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing, unknown = sorted(set(keys) - set(row)), sorted(set(row) - set(keys))
    if missing or unknown:
        raise ValueError(f"{where}missing keys {missing}, unknown keys {unknown}")


def exemplars(prompt_id: str, problem: Problem) -> list[Problem]:
    """The shots ``problem``'s prompt shows: the file's exemplars, in order, less ``problem``
    itself (same id, or same question under another id, e.g. a dataset read in another order).

    A problem that is one of the exemplars gets one shot fewer rather than a substitute, so
    every prompt is built from the reviewed file alone.
    """
    return [s for s in template(prompt_id).exemplars if s.id != problem.id and s.question != problem.question]


def zero_shot(prompt_id: str, problem: Problem) -> str:
    """The prompt a finetuned model is trained and evaluated with."""
    return template(prompt_id).question.format(question=problem.question)


def few_shot(prompt_id: str, problem: Problem) -> str:
    """The sampling prompt: the solved exemplars (never ``problem`` itself), then ``problem``."""
    t = template(prompt_id)
    blocks = [
        zero_shot(prompt_id, s) + t.answer.format(solution=s.solution.strip(), answer=s.answer)
        for s in exemplars(prompt_id, problem)
    ]
    return "\n\n".join([*blocks, zero_shot(prompt_id, problem)])
