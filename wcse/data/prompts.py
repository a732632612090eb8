"""Prompts, versioned files: ``wcse/data/prompts/<prompt_id>.yaml``.

Sampling uses a few-shot prompt for pretrained (non-instruction) models, as the paper does
(4-shot MATH, 8-shot GSM8K); finetuning and evaluation use the zero-shot form of the same
template, so a finetuned model is tested the way it was trained. The exemplars are fixed in the
file, copied from the dataset's training split (so their licence is the data's), rather than
picked at run time, so a prompt is something to read, review and cite. The file's ``version``
enters the sampling params and with them every sample's key and record: a changed prompt never
reuses samples made with the old one.

A file also declares its ``stop`` strings: a pretrained model given a few-shot prompt writes its
answer and goes on with the next exemplar, whose answer the graders would take. A stop string is
how that next exemplar begins (checked at load time: it must end every exemplar's answer, and
never cut into one), requests carry it as ``params["stop"]`` (so it is part of the key), the
backends end generation there, and the verifier cuts any text that still runs on
(:func:`wcse.records.cut_at_stop`). ``chat`` says how :func:`messages` renders the few-shot
prompt for a chat-only API: as one user message, or as one user/assistant exchange per exemplar.

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

from wcse.records import Problem, cut_at_stop

PROMPTS_DIR = Path(__file__).with_name("prompts")
KEYS = ("version", "description", "source", "shots", "question", "answer", "stop", "chat", "exemplars")
EXEMPLAR_KEYS = ("id", "question", "solution", "answer")
CHAT_MODES = ("one_message", "multi_turn")
SHOT_SEPARATOR = "\n\n"  # between the solved exemplars, and before the problem


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
    stop: tuple[str, ...]  # where a generation ends: how the next exemplar begins
    chat: str  # one of CHAT_MODES: how messages() renders the shots
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
    if raw["chat"] not in CHAT_MODES:
        raise ValueError(f"{where}'chat' is {raw['chat']!r}; must be one of {list(CHAT_MODES)}")
    stop = tuple(check_stop(raw, exemplars, where))
    return Prompt(
        id=path.stem,
        version=raw["version"],
        description=raw["description"],
        source=raw["source"],
        shots=raw["shots"],
        question=raw["question"],
        answer=raw["answer"],
        stop=stop,
        chat=raw["chat"],
        exemplars=tuple(exemplars),
    )


def check_stop(raw: dict[str, Any], exemplars: list[Problem], where: str) -> list[str]:
    """The file's stop strings, checked against its own exemplars: cutting an exemplar's answer at
    them keeps all of it (everything up to the template's last field), and the text from one
    exemplar's answer to the next question holds one (else a model copying the format runs on)."""
    stop = raw["stop"]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(set(stop)) != len(stop):
        raise ValueError(f"{where}'stop' must be a list of distinct non-empty strings (got {stop!r})")
    for a in stop:
        for b in stop:
            if a != b and b in a:
                raise ValueError(f"{where}stop string {a!r} contains {b!r}: one of them is enough")
    parsed = list(string.Formatter().parse(raw["answer"]))
    answer_tail = parsed[-1][0] if parsed[-1][1] is None else ""  # literal text after the last field
    for e in exemplars:
        block = raw["answer"].format(solution=e.solution.strip(), answer=e.answer)
        kept, cut_by = cut_at_stop(block, stop)
        if len(kept) < len(block) - len(answer_tail):
            raise ValueError(f"{where}stop string {cut_by!r} cuts into exemplar {e.id}'s answer")
    if exemplars:
        question_head = raw["question"].split("{question}", 1)[0]
        joint = answer_tail + SHOT_SEPARATOR + question_head
        if cut_at_stop(joint, stop)[1] is None:
            raise ValueError(
                f"{where}no stop string occurs where one exemplar's answer ends and the next begins "
                f"({joint!r}): a pretrained model would run on into a next exemplar"
            )
    return stop


def stop_strings(prompt_id: str) -> list[str]:
    """The prompt's stop strings (a new list: requests keep it in their params)."""
    return list(template(prompt_id).stop)


def stop_params(prompt_id: str) -> dict[str, list[str]]:
    """What a request's params add for the prompt's stop strings: ``{"stop": [...]}``, or nothing
    when it has none, so the keys of prompts without stop strings stay as they were."""
    stops = stop_strings(prompt_id)
    return {"stop": stops} if stops else {}


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


def solved(prompt_id: str, problem: Problem) -> list[tuple[str, str]]:
    """(question, answer) as the prompt renders each of ``problem``'s shots."""
    t = template(prompt_id)
    return [
        (zero_shot(prompt_id, s), t.answer.format(solution=s.solution.strip(), answer=s.answer))
        for s in exemplars(prompt_id, problem)
    ]


def few_shot(prompt_id: str, problem: Problem) -> str:
    """The sampling prompt: the solved exemplars (never ``problem`` itself), then ``problem``."""
    return SHOT_SEPARATOR.join([*(q + a for q, a in solved(prompt_id, problem)), zero_shot(prompt_id, problem)])


_few_shot_text = few_shot  # messages() takes a keyword of the same name


def messages(
    prompt_id: str, problem: Problem, *, few_shot: bool, system: str | None = None
) -> list[dict[str, str]]:
    """The prompt as chat messages, for an API that takes no raw text.

    Zero-shot: one user message. Few-shot, as the file's ``chat`` says: ``one_message`` sends the
    whole few-shot text as one user message; ``multi_turn`` sends each shot as a user question and
    an assistant answer, then the question (the way chat models are trained to read examples, and
    lm-eval's ``--fewshot_as_multiturn``). Contents are stripped: the chat template separates turns.
    """
    t = template(prompt_id)
    if not few_shot:
        turns = [("user", zero_shot(prompt_id, problem))]
    elif t.chat == "one_message":
        turns = [("user", _few_shot_text(prompt_id, problem))]
    else:
        turns = [turn for q, a in solved(prompt_id, problem) for turn in (("user", q), ("assistant", a))]
        turns.append(("user", zero_shot(prompt_id, problem)))
    if system is not None:
        turns.insert(0, ("system", system))
    return [{"role": role, "content": text.strip()} for role, text in turns]


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
