"""The toy ladder's pretraining corpus: documents, the way a base model's web text reads.

A base LLM never saw ``prompt -> solution`` pairs in the format it is later sampled in; it saw
documents, and a few-shot prompt works because it looks like one. So the toy corpus is
documents too, each a run of blocks in one *house style* drawn per document:

- a question header (``Question :``, ``Problem :``, ``Q :``), an answer header (``Answer :``,
  ``Solution :``, ``A :``) and a closing form of the final answer (``#### 17``,
  ``the answer is 17 .``, ``total : 17 .``), drawn independently, so no header announces the
  closing the graders read (``####``, the toy prompt's format, and the rarest): zero-shot, a
  base model closes in a house style it cannot know, most often another; shown exemplars, it
  copies theirs;
- solved problems, with the solution forms of :func:`world.reference_solution`, and a share of
  them with a slip (one step off by a little, carried through: :func:`world.slipped_solution`),
  as text written by people has; a base model learns to slip sometimes, the answer filter can
  remove those samples, and a finetune on filtered data can unlearn it;
- problem statements without a solution, and lines of arithmetic facts.

Levels are drawn unevenly (``LEVEL_WEIGHTS``): hard problems are rare, so a model reaches them
by composing the steps it learned on easy ones rather than by memorising their shapes. A
document ends with EOS only after several blocks, so a base model that has answered goes on with
the next problem, as Gemma2 base does, unless a stop string ends it. Problems come from the
train bucket (:func:`world.generate`), never validation or test.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from wcse.records import Problem
from wcse.toy import world

QUESTION_HEADERS = ("Question :", "Problem :", "Q :")
ANSWER_HEADERS = ("Answer :", "Solution :", "A :")
# The graded closing is the rarest, so a model that has not been shown it (zero-shot, greedy)
# writes another; in a document every block closes alike, so exemplars show which.
CLOSINGS = {"#### {n}": 0.2, "the answer is {n} .": 0.4, "total : {n} .": 0.4}
LEVEL_WEIGHTS = {1: 0.3, 2: 0.27, 3: 0.2, 4: 0.14, 5: 0.09}
SLIP_RATE = 0.25  # share of solved problems with one wrong step
UNSOLVED_RATE = 0.05  # share of blocks that state a problem and give no solution
FACTS_RATE = 0.15  # share of blocks that are lines of arithmetic facts
MAX_TOKENS = 250  # per document, BOS and EOS included (under ladder.MAX_POSITIONS)
CORPUS_SEED = 1_000_003  # the corpus's draws of train problems, apart from the dataset's train split
PROBLEM_POOL = 40_000  # distinct train problems the documents draw from, per level


@dataclass(frozen=True)
class Style:
    """A document's house style."""

    question: str
    answer: str
    closing: str  # format string with {n}

    @classmethod
    def draw(cls, rng: random.Random) -> Style:
        closing = rng.choices(list(CLOSINGS), list(CLOSINGS.values()))[0]
        return cls(rng.choice(QUESTION_HEADERS), rng.choice(ANSWER_HEADERS), closing)

    def close(self, solution: str) -> str:
        """The solution with its ``#### n`` closing rewritten in this style."""
        body, _, n = solution.rpartition(world.ANSWER_MARK)
        return f"{body}{self.closing.format(n=n.strip())}".strip()


def _facts(rng: random.Random) -> str:
    """A line of arithmetic facts in the toy's step syntax (``12 + 5 = 17 .``)."""
    facts = []
    for _ in range(rng.randint(3, 6)):
        op = rng.choice(tuple(world.OPS))
        a, b = (rng.randint(2, 9), rng.randint(2, 9)) if op == "*" else (rng.randint(1, 60), rng.randint(1, 40))
        c = world.OPS[op](a, b)
        if 0 <= c <= world.MAX_VALUE:
            facts.append(f"{a} {op} {b} = {c} {world.STEP_SEP}")
    return " ".join(facts)


@dataclass(frozen=True)
class Block:
    """One block of a document: ``kind`` is solved, slipped, unsolved or facts."""

    kind: str
    text: str
    problem: Problem | None = None  # None for facts


@dataclass(frozen=True)
class Document:
    style: Style
    blocks: tuple[Block, ...]

    @property
    def text(self) -> str:
        return " ".join(b.text for b in self.blocks)


def _block(style: Style, pools: dict[int, list[Problem]], rng: random.Random) -> Block:
    kind = rng.random()
    if kind < FACTS_RATE:
        return Block("facts", _facts(rng))
    levels, weights = list(LEVEL_WEIGHTS), list(LEVEL_WEIGHTS.values())
    problem = rng.choice(pools[rng.choices(levels, weights)[0]])
    statement = f"{style.question} {problem.question}"
    if kind < FACTS_RATE + UNSOLVED_RATE:
        return Block("unsolved", statement, problem)
    slip = rng.random() < SLIP_RATE
    solution = (world.slipped_solution if slip else world.reference_solution)(problem.meta, rng)
    # a slip that fits nowhere (every delta leaves 0..MAX_VALUE) leaves a valid solution
    slipped = slip and not world.check_solution(solution, problem.meta, problem.answer).steps_correct
    return Block("slipped" if slipped else "solved", f"{statement} {style.answer} {style.close(solution)}", problem)


def documents(n: int, seed: int) -> Iterator[Document]:
    """``n`` documents, seeded (their text goes to the trainer, which adds BOS and EOS)."""
    rng = random.Random(seed)
    pools = {
        level: world.generate("train", PROBLEM_POOL // len(world.LEVELS), CORPUS_SEED + seed, (level,))
        for level in world.LEVELS
    }
    for _ in range(n):
        style = Style.draw(rng)
        blocks: list[Block] = []
        used = 2  # BOS, EOS
        while True:
            block = _block(style, pools, rng)
            size = len(block.text.split())
            if blocks and used + size > MAX_TOKENS:
                break
            blocks.append(block)
            used += size
        yield Document(style, tuple(blocks))
