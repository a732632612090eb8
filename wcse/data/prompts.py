"""Prompt templates, versioned: every sample record carries the version it was made with.

Sampling uses a few-shot prompt for pretrained (non-instruction) models, as the paper does
(4-shot MATH, 8-shot GSM8K); finetuning and evaluation use the zero-shot form of the same
template, so a finetuned model is tested the way it was trained. Exemplars come from the
dataset's own training split, chosen by a fixed hash of their ids (their licence is the
data's, and the choice does not depend on file order), and are never the problem asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from wcse.records import Problem
from wcse.toy.tokenizer import prompt as toy_prompt


@dataclass(frozen=True)
class Template:
    version: str
    shots: int
    question: str  # format string with {question}
    answer: str  # format string with {solution} and {answer}: how an exemplar's solution reads


TEMPLATES: dict[str, Template] = {
    "toy": Template("toy-v1", 0, "", ""),
    "math_4shot": Template(
        "math-v1",
        4,
        "Problem:\n{question}\n\nSolution:",
        " {solution}\nFinal Answer: The final answer is ${answer}$. I hope it is correct.",
    ),
    "gsm8k_8shot": Template("gsm8k-v1", 8, "Question: {question}\nAnswer:", " {solution}"),
    "mbpp_3shot": Template(
        "mbpp-v1", 3, "You are an expert Python programmer, and here is your task: {question}\n", "[BEGIN]\n{solution}\n[DONE]"
    ),
    "humaneval": Template("humaneval-v1", 0, "{question}", "{solution}"),
}


def template(prompt_id: str) -> Template:
    try:
        return TEMPLATES[prompt_id]
    except KeyError:
        raise ValueError(f"dataset.prompt={prompt_id!r}: unknown prompt; known: {sorted(TEMPLATES)}") from None


def exemplars(prompt_id: str, train: Sequence[Problem]) -> list[Problem]:
    """The fixed few-shot exemplars of ``prompt_id`` drawn from the training split."""
    k = template(prompt_id).shots
    return sorted(train, key=lambda p: hashlib.sha1(p.id.encode()).hexdigest())[: k + 1] if k else []


def zero_shot(prompt_id: str, problem: Problem) -> str:
    """The prompt a finetuned model is trained and evaluated with."""
    if prompt_id == "toy":
        return toy_prompt(problem.question)
    return template(prompt_id).question.format(question=problem.question)


def few_shot(prompt_id: str, problem: Problem, shots: Sequence[Problem]) -> str:
    """The sampling prompt: ``shots`` solved exemplars (never ``problem`` itself), then it."""
    t = template(prompt_id)
    chosen = [s for s in shots if s.id != problem.id][: t.shots]
    blocks = [
        zero_shot(prompt_id, s) + t.answer.format(solution=s.solution.strip(), answer=s.answer) for s in chosen
    ]
    return "\n\n".join([*blocks, zero_shot(prompt_id, problem)])
