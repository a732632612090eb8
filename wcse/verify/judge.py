"""LLM-as-a-judge, through any sampler backend, with versioned judge prompts.

Two uses in the paper, one prompt kind each (``wcse/verify/judge_prompts/<prompt_id>.yaml``):

- ``steps``: is every reasoning step right? For the false-positive rate (right final answer,
  wrong reasoning), which the paper measures with Gemini-1.5-Pro as judge.
- ``answer``: is the final answer right, with no ground truth to compare with? For the label-free
  experiment, where the judge decides which samples to keep.

A judgement is generated like a sample, as a :class:`~wcse.sampling.store.SampleRequest` kept in a
:class:`~wcse.sampling.store.SampleStore`, so judging is cached, resumable and crash-safe the same
way. Its key names the judge model, the judge prompt's version, the chat template, and the judged
sample (its key and text, hashed into the request's ``problem_id``), so a new prompt version or a
new judge never reuses old judgements. The judged sample goes into ``problem_id`` rather than into
``params`` because backends batch requests with equal params together.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wcse.data import prompts
from wcse.models import load_tokenizer
from wcse.records import Problem, Sample, Verdict
from wcse.sampling.store import Sampler, SampleRequest, SampleStore, ensure_samples

log = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).with_name("judge_prompts")
KEYS = ("version", "description", "kind", "template")
# kind -> the fields its template may use. The label-free judge never sees the ground truth.
KINDS = {
    "steps": ("question", "solution", "steps", "reference"),
    "answer": ("question", "solution", "steps"),
}


@dataclass(frozen=True)
class JudgePrompt:
    """One judge prompt file, validated."""

    id: str
    version: str
    description: str
    kind: str  # "steps" or "answer"
    # format string: {question}; the solution as written ({solution}) or as numbered steps
    # ({steps}); for "steps", optionally the reference final answer ({reference})
    template: str
    fields: frozenset[str]  # the fields the template uses


@dataclass(frozen=True)
class Judgement:
    """What a judge said about one sample; ``verdict`` is None when its reply had no verdict line."""

    verdict: bool | None
    first_error_step: int | None  # the first wrong step a "steps" judge named, when incorrect
    status: str  # "ok" or "unparsable"


def known() -> list[str]:
    """The ids of the judge prompt files."""
    return prompts.file_ids(PROMPTS_DIR)


@functools.cache
def template(prompt_id: str) -> JudgePrompt:
    """The judge prompt ``prompt_id``, loaded once per process."""
    if prompt_id not in known():
        raise ValueError(f"judge prompt {prompt_id!r}: unknown; known: {known()}")
    return load(PROMPTS_DIR / f"{prompt_id}.yaml")


def load(path: Path) -> JudgePrompt:
    """Read and validate a judge prompt file; an error names the file and what is wrong."""
    raw = prompts.read_mapping(path)
    where = f"{path}: "
    prompts.check_keys(raw, KEYS, where)
    prompts.check_strings(raw, KEYS, where)
    if raw["kind"] not in KINDS:
        raise ValueError(f"{where}'kind' is {raw['kind']!r}, not one of {sorted(KINDS)}")
    fields = prompts.template_fields(raw, "template", KINDS[raw["kind"]], where)
    if "question" not in fields or not fields & {"solution", "steps"}:
        raise ValueError(
            f"{where}'template' must show {{question}} and the solution ({{solution}} or {{steps}})"
        )
    return JudgePrompt(
        id=path.stem,
        version=raw["version"],
        description=raw["description"],
        kind=raw["kind"],
        template=raw["template"],
        fields=frozenset(fields),
    )


def number_steps(solution: str) -> str:
    """The solution as "Step i: ..." lines, one step per non-empty line (PRM800K's steps), so the
    first wrong step a judge names can be read back and located."""
    lines = [line.strip() for line in solution.splitlines() if line.strip()]
    return "\n".join(f"Step {i}: {line}" for i, line in enumerate(lines, 1))


def render(prompt_id: str, problem: Problem, sample: Sample) -> str:
    """The judge prompt for one sample, as the user message (before any chat template)."""
    t = template(prompt_id)
    if "reference" in t.fields and not problem.answer:
        raise ValueError(
            f"judge prompt {prompt_id!r} shows the reference answer, but problem {problem.id!r} has none"
        )
    return t.template.format(
        question=problem.question.strip(),
        solution=sample.response.strip(),
        steps=number_steps(sample.response),
        reference=problem.answer,
    )


class ChatTemplate:
    """An instruct judge's chat template, applied here because the hf and vLLM backends take raw
    text (a judge behind a chat API gets messages instead, and the server applies its template).

    The judge prompt is one user turn with no system turn (Gemma's template rejects one).
    Backends tokenize a prompt with the tokenizer's special tokens, so a template that writes the
    BOS token itself would give the judge two: that leading BOS is dropped.
    """

    def __init__(self, tokenizer_path: str) -> None:
        self.tokenizer = load_tokenizer(tokenizer_path)  # a pinned hub id (id@revision) loads too
        chat_template = self.tokenizer.chat_template
        if not isinstance(chat_template, str) or not chat_template:
            raise ValueError(
                f"{tokenizer_path}: the tokenizer has no (single) chat template; judge with chat=None"
            )
        self.digest = hashlib.sha1(chat_template.encode()).hexdigest()[:12]  # enters every judgement's key
        adds_bos = self.tokenizer("x")["input_ids"][:1] == [self.tokenizer.bos_token_id]
        self._extra_bos = self.tokenizer.bos_token if adds_bos and self.tokenizer.bos_token else ""

    def __call__(self, message: str) -> str:
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
        )
        return text.removeprefix(self._extra_bos) if self._extra_bos else text


# "Verdict: correct", tolerating what judges write around it: markdown ("**Verdict:** Incorrect",
# "## Verdict\n**correct**"), case, words before it ("Final verdict"), other separators
# ("Verdict - Correct", "the verdict is correct"). "incorrect" is tried first and "correct" must
# start a word, so "incorrect" never reads as "correct"; an echoed format line ("Verdict:
# correct|incorrect") is no verdict.
_SEP = r"[\s*_`]*(?:[:=\-–—]|\bis\b)?[\s*_`\"'\[(]*"
_VERDICT = re.compile(rf"\bverdict\b{_SEP}(?P<verdict>incorrect|correct)\b(?![\s*_`]*[|/])", re.IGNORECASE)
_FIRST_ERROR = re.compile(
    rf"\bfirst\s+(?:error|mistake|(?:wrong|incorrect)\s+step)\b{_SEP}(?:(?:in|at)\s+)?(?:step\s*)?#?\s*(?P<step>\d+)\b",
    re.IGNORECASE,
)


def parse_judgement(text: str) -> Judgement:
    """The judge's last verdict (a judge may revise itself) and, when incorrect, the first wrong
    step it named; "unparsable" when it gave no verdict (e.g. cut short by max_new_tokens)."""
    verdicts = list(_VERDICT.finditer(text))
    if not verdicts:
        return Judgement(verdict=None, first_error_step=None, status="unparsable")
    correct = verdicts[-1].group("verdict").lower() == "correct"
    errors = list(_FIRST_ERROR.finditer(text))
    first_error = int(errors[-1].group("step")) if errors and not correct else None
    return Judgement(verdict=correct, first_error_step=first_error, status="ok")


def judged_id(sample: Sample) -> str:
    """The ``problem_id`` of a judgement request: readable (the judged problem), and unique per
    judged sample through a digest of its key and text."""
    digest = hashlib.sha1(f"{sample.key}\n{sample.response}".encode()).hexdigest()[:16]
    return f"{sample.problem_id}@{digest}"


def judge_requests(
    prompt_id: str,
    judge_model_id: str,
    dataset_id: str,
    problems: Mapping[str, Problem],
    samples: Sequence[Sample],
    params: Mapping[str, Any],
    seed: int,
    *,
    chat: ChatTemplate | None = None,
) -> list[SampleRequest]:
    """One request per judged sample, in order, filed under ``dataset_id`` (the judged samples').

    ``params`` are the judge's sampling params (temperature, top_p, max_new_tokens, and the API
    mode from :func:`wcse.sampling.backends.request_params`); the prompt version and the chat
    template are added to them, so both enter every key. ``chat``: the judge's chat template
    (instruct judges on hf or vLLM), or None to send the prompt as raw text. A judge behind a chat
    API (params ``"api": "chat"``, e.g. a hosted model) is sent the prompt as a user message
    (after the system turn its params name, if any) and takes no ``chat``: its server applies
    the template.
    """
    t = template(prompt_id)
    api_chat = params.get("api") == "chat"
    if api_chat and chat is not None:
        raise ValueError("a chat API judge (sampler.api=chat) is sent messages: its server applies the chat template, pass chat=None")
    system = [{"role": "system", "content": params["system"]}] if "system" in params else []
    params = {**params, "judge_prompt": t.version, "chat": chat.digest if chat else None}
    requests = []
    for sample in samples:
        problem = problems.get(sample.problem_id)
        if problem is None:
            raise ValueError(f"sample {sample.key}: problem {sample.problem_id!r} is not in the dataset")
        message = render(prompt_id, problem, sample)
        requests.append(
            SampleRequest.create(
                model=judge_model_id,
                dataset=dataset_id,
                problem_id=judged_id(sample),
                index=sample.index,
                prompt=chat(message) if chat else message,
                params=params,
                base_seed=seed,
                messages=[*system, {"role": "user", "content": message}] if api_chat else None,
            )
        )
    return requests


def judge_samples(
    open_judge: Callable[[], AbstractContextManager[Sampler]],
    store: SampleStore,
    samples: Sequence[Sample],
    requests: Sequence[SampleRequest],
) -> dict[str, Judgement]:
    """Judgements keyed by judged sample key, in sample order, for ``requests`` (from
    :func:`judge_requests`, one per sample). Only judgements ``store`` lacks are generated, and
    each chunk is stored as it is done: a killed run resumes where it stopped. ``open_judge``
    starts the judge's engine, and is called only when a judgement is missing."""
    if {r.key for r in requests} <= store.keys():
        replies = store.select([r.key for r in requests])
    else:
        with open_judge() as sampler:
            replies = ensure_samples(store, sampler, requests, desc="judge")
    judgements = {s.key: parse_judgement(r.text) for s, r in zip(samples, replies, strict=True)}
    unparsable = sum(j.status == "unparsable" for j in judgements.values())
    if unparsable:
        log.warning("judge: %d of %d replies have no verdict line", unparsable, len(judgements))
    return judgements


def apply_step_judgements(verdicts: Sequence[Verdict], judgements: Mapping[str, Judgement]) -> list[Verdict]:
    """``verdicts`` with ``steps_correct`` from a "steps" judge where it judged the sample (None
    where its reply was unparsable, so the FPR counts only real verdicts); the rest unchanged.

    FPR judges only the samples whose final answer was right, hence a mapping, not a parallel list.
    """
    unknown = set(judgements) - {v.key for v in verdicts}
    if unknown:
        raise ValueError(f"{len(unknown)} judgements are of samples without a verdict, e.g. {min(unknown)!r}")
    return [
        dataclasses.replace(v, steps_correct=judgements[v.key].verdict) if v.key in judgements else v
        for v in verdicts
    ]


def label_free_verdicts(samples: Sequence[Sample], judgements: Mapping[str, Judgement]) -> list[Verdict]:
    """Verdicts with no ground truth: correct = an "answer" judge said so. An unparsable reply
    counts as not correct, so the label-free arm never trains on a sample the judge did not accept."""
    missing = [s.key for s in samples if s.key not in judgements]
    if missing:
        raise ValueError(f"{len(missing)} samples were not judged, e.g. {missing[0]!r}")
    return [
        Verdict(
            key=s.key,
            problem_id=s.problem_id,
            index=s.index,
            extracted=None,  # no answer check ran
            correct=judgements[s.key].verdict is True,
            steps_correct=None,
            status="judged" if judgements[s.key].status == "ok" else "unparsable",
        )
        for s in samples
    ]
