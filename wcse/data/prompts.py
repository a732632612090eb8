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
import string
from collections.abc import Iterable
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
    return file_ids(PROMPTS_DIR)


def file_ids(directory: Path) -> list[str]:
    """The ids of a directory's prompt files: a prompt's id is its file name."""
    return sorted(path.stem for path in directory.glob("*.yaml"))


@functools.cache
def template(prompt_id: str) -> Prompt:
    """The prompt ``prompt_id``, loaded once per process."""
    if prompt_id not in known():
        raise ValueError(f"dataset.prompt={prompt_id!r}: unknown prompt; known: {known()}")
    return load(PROMPTS_DIR / f"{prompt_id}.yaml")


def load(path: Path) -> Prompt:
    """Read and validate a prompt file; an error names the file and what is wrong."""
    raw = read_mapping(path)
    where = f"{path}: "
    check_keys(raw, KEYS, where)
    check_strings(raw, ("version", "description", "source", "question", "answer"), where)
    if not isinstance(raw["shots"], int) or raw["shots"] < 0:
        raise ValueError(f"{where}'shots' must be a non-negative integer")
    if not isinstance(raw["exemplars"], list) or raw["shots"] != len(raw["exemplars"]):
        raise ValueError(f"{where}'shots' is {raw['shots']} but 'exemplars' is not a list of that many")
    if "question" not in template_fields(raw, "question", ("question",), where):
        raise ValueError(f"{where}'question' must contain {{question}}")
    template_fields(raw, "answer", ("solution", "answer"), where)
    exemplars = []
    for i, row in enumerate(raw["exemplars"]):
        if not isinstance(row, dict):
            raise ValueError(f"{where}exemplar {i} is not a mapping")
        check_keys(row, EXEMPLAR_KEYS, f"{where}exemplar {i}: ")
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


# Validation shared by every kind of versioned prompt file (wcse.verify.judge reads its own kind).
# ``where`` prefixes every error, so it names the file (and the part of it) that is wrong.


def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; PyYAML's own errors name no file, so this one does."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a mapping")
    return raw


def check_keys(row: dict[str, Any], keys: Iterable[str], where: str) -> None:
    keys = set(keys)
    missing, unknown = sorted(keys - set(row)), sorted(set(row) - keys)
    if missing or unknown:
        raise ValueError(f"{where}missing keys {missing}, unknown keys {unknown}")


def check_strings(row: dict[str, Any], keys: Iterable[str], where: str) -> None:
    for key in keys:
        if not isinstance(row[key], str) or not row[key]:
            raise ValueError(f"{where}{key!r} must be a non-empty string")


def template_fields(row: dict[str, Any], key: str, allowed: Iterable[str], where: str) -> set[str]:
    """The fields template ``row[key]`` uses. A stray brace or any field but ``allowed`` is an
    error here, naming the file and key, rather than at the first rendering, mid-run."""
    allowed = tuple(allowed)
    text = row[key]
    try:
        text.format(**dict.fromkeys(allowed, ""))
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        if not fields <= set(allowed):  # "{question.upper}" formats, but is no plain field
            raise KeyError(*sorted(fields - set(allowed)))
    except (KeyError, IndexError, AttributeError, ValueError) as err:
        raise ValueError(
            f"{where}{key!r}: bad template ({err!r}): use only "
            + ", ".join(f"{{{name}}}" for name in allowed)
            + ", and write a literal brace as {{ or }}"
        ) from None
    return fields
