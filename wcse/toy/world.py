"""The toy world: multi-step arithmetic word problems whose every reasoning step is checkable.

Each problem is a small computation tree (``Problem.meta["steps"]``): internal nodes are
``[op, x, y]`` where ``x``/``y`` are either integers stated in the question or ``"#k"``, the
result of step ``k``. A solution is a sequence of steps ``a op b = c``; it is *correct in every
step* when each step evaluates a tree node whose inputs are already available, with the right
arithmetic. Because the tree is known, the false-positive rate (right final answer, some wrong
step) is measured exactly instead of by a judge.

Solutions admit several valid forms, so diversity@k is measurable:
- the order of independent steps (two people's running totals can be computed in any order),
- the operand order of ``+`` and ``*``,
- an optional restatement of each person's starting quantity (``Mia has 12 .``),
- phrasing: steps may be introduced by ``so``.

A wrong step can still reach the right answer (two compensating slips, or a misread quantity
that happens to give the same total), so FPR is not trivially zero.

A generated problem is a template with its stated numbers as slots (``Template``), so the same
problem can be re-instantiated with other numbers: ``variants`` builds the toy counterpart of
Functional MATH, a transfer set of the test problems with re-drawn quantities.

Numbers are whole words of the vocabulary (``0`` .. ``MAX_VALUE``), which keeps sequences short:
a level-5 problem with its solution is under 100 tokens.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from wcse.records import Problem

log = logging.getLogger(__name__)

MAX_VALUE = 99
LEVELS = (1, 2, 3, 4, 5)
NAMES = ("Mia", "Leo", "Ana", "Sam", "Tom", "Eva", "Ben", "Zoe")
ITEMS = ("apples", "pens", "cards", "books", "coins", "shells", "stamps", "marbles")
GAIN_VERBS = ("buys", "finds", "gets", "wins")
LOSS_VERBS = ("loses", "sells", "gives away", "uses")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
COMMUTATIVE = frozenset("+*")
ANSWER_MARK = "####"
STEP_SEP = "."
VARIANT_ATTEMPTS = 2000  # draws per test problem before it is left with fewer variants
CONNECTIVE = "so"

# Split buckets by a hash of the question text: disjoint by construction, whatever the seeds.
_BUCKETS = {"test": range(0, 5), "validation": range(5, 10), "train": range(10, 100)}

Ref = int | str  # a stated quantity, or "#k": the result of step k


@dataclass
class _Builder:
    """Accumulates sentences and the computation tree while a problem is generated.

    Stated quantities are slots (``"$i"``) in both the sentences and the tree, with the range
    each was drawn from, so the finished problem is a template that other numbers can fill.
    """

    rng: random.Random
    sentences: list[str] = field(default_factory=list)
    steps: list[list] = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def state(self, value: int, low: int, high: int) -> str:
        """A quantity the question states, drawn from ``low..high``; returns its slot."""
        self.numbers.append(value)
        self.ranges.append((low, high))
        return f"${len(self.numbers) - 1}"

    def step(self, op: str, x: str, y: str) -> str:
        value = OPS[op](self.value(x), self.value(y))
        self.steps.append([op, x, y])
        self.values.append(value)
        return f"#{len(self.steps) - 1}"

    def value(self, ref: str) -> int:
        return (self.values if ref[0] == "#" else self.numbers)[int(ref[1:])]


@dataclass(frozen=True)
class Template:
    """A problem with its stated numbers left open: the question and tree hold slots ``"$i"``."""

    text: str
    steps: tuple[tuple[str, str, str], ...]
    people: tuple[tuple[str, str], ...]  # (name, slot of the starting quantity)
    numbers: tuple[int, ...]  # the numbers it was generated with
    ranges: tuple[tuple[int, int], ...]  # where each number was drawn from

    def instantiate(self, numbers: Sequence[int]) -> tuple[str, dict] | None:
        """The question and tree with ``numbers`` in the slots; None if a quantity along the way
        leaves 0..MAX_VALUE (nobody has -3 apples)."""
        values: list[int] = []

        def resolve(ref: str) -> Ref:
            return numbers[int(ref[1:])] if ref[0] == "$" else ref

        def value(ref: Ref) -> int:
            return values[int(ref[1:])] if isinstance(ref, str) else ref

        steps = [[op, resolve(x), resolve(y)] for op, x, y in self.steps]
        for op, x, y in steps:
            values.append(OPS[op](value(x), value(y)))
            if not 0 <= values[-1] <= MAX_VALUE:
                return None
        question = " ".join(str(resolve(w)) if w[0] == "$" else w for w in self.text.split())
        people = {name: numbers[int(slot[1:])] for name, slot in self.people}
        return question, {"steps": steps, "values": values, "people": people}


def _bucket(question: str) -> int:
    return int.from_bytes(hashlib.sha1(question.encode()).digest()[:4], "big") % 100


def _events(b: _Builder, name: str, start: str, n_steps: int) -> str:
    """Append gain/loss/box events for ``name`` worth ``n_steps`` steps; return the final total.

    A box event ("buys 3 boxes of 4") costs two steps: the product, then the sum.
    """
    total = start
    remaining = n_steps
    while remaining:
        current = b.value(total)
        kind = b.rng.choice(("gain", "loss", "boxes") if remaining >= 2 else ("gain", "loss"))
        boxes, per_box = b.rng.randint(2, 9), b.rng.randint(2, 9)
        if kind == "boxes" and current + boxes * per_box <= MAX_VALUE:
            boxes_slot, per_box_slot = b.state(boxes, 2, 9), b.state(per_box, 2, 9)
            b.sentences.append(f"{name} buys {boxes_slot} boxes of {per_box_slot} .")
            total = b.step("+", total, b.step("*", boxes_slot, per_box_slot))
            remaining -= 2
        elif (kind != "loss" or current < 3) and current < MAX_VALUE - 2:
            x = b.state(b.rng.randint(2, min(30, MAX_VALUE - current)), 2, 30)
            b.sentences.append(f"{name} {b.rng.choice(GAIN_VERBS)} {x} more .")
            total = b.step("+", total, x)
            remaining -= 1
        else:
            x = b.state(b.rng.randint(1, min(30, current - 1)), 1, 30)
            b.sentences.append(f"{name} {b.rng.choice(LOSS_VERBS)} {x} .")
            total = b.step("-", total, x)
            remaining -= 1
    return total


def _generate_one(rng: random.Random, level: int) -> Template:
    """One problem with exactly ``level`` reasoning steps."""
    b = _Builder(rng)
    item = rng.choice(ITEMS)
    two_people = level >= 3 and rng.random() < 0.5
    if not two_people:
        name = rng.choice(NAMES)
        start = b.state(rng.randint(5, 60), 5, 60)
        b.sentences.append(f"{name} has {start} {item} .")
        _events(b, name, start, level)
        question = f"How many {item} does {name} have now ?"
        people = {name: start}
    else:
        first, second = rng.sample(NAMES, 2)
        people = {first: b.state(rng.randint(5, 45), 5, 45), second: b.state(rng.randint(5, 45), 5, 45)}
        for who, slot in people.items():
            b.sentences.append(f"{who} has {slot} {item} .")
        n_first = rng.randint(1, level - 2)
        t1 = _events(b, first, people[first], n_first)
        t2 = _events(b, second, people[second], level - 1 - n_first)
        if rng.random() < 0.5 and b.value(t1) >= b.value(t2):
            b.step("-", t1, t2)
            question = f"How many more {item} does {first} have than {second} ?"
        else:
            b.step("+", t1, t2)
            question = f"How many {item} do {first} and {second} have together ?"
    return Template(
        text=" ".join([*b.sentences, question]),
        steps=tuple((op, x, y) for op, x, y in b.steps),
        people=tuple(people.items()),
        numbers=tuple(b.numbers),
        ranges=tuple(b.ranges),
    )


def _problem(problem_id: str, question: str, meta: dict, level: int) -> Problem:
    return Problem(
        id=problem_id,
        question=question,
        answer=str(meta["values"][-1]),
        solution=reference_solution(meta, random.Random(question)),
        level=level,
        subject="two_people" if len(meta["people"]) == 2 else "one_person",
        meta=meta,
    )


def _draw(split: str, n: int, seed: int, levels: tuple[int, ...]) -> Iterator[tuple[Problem, Template]]:
    """The problems of ``generate`` with the templates they were instantiated from."""
    buckets = _BUCKETS[split]
    rng = random.Random(f"{split}:{seed}")
    seen: set[str] = set()
    while len(seen) < n:
        level = rng.choice(levels)
        template = _generate_one(rng, level)
        made = template.instantiate(template.numbers)
        if made is None or len(template.steps) != level or made[0] in seen or _bucket(made[0]) not in buckets:
            continue
        question, meta = made
        yield _problem(f"toy-{split}-{seed}-{len(seen):06d}", question, meta, level), template
        seen.add(question)


def generate(split: str, n: int, seed: int, levels: tuple[int, ...] = LEVELS) -> list[Problem]:
    """``n`` problems of ``split`` (train / validation / test), levels drawn uniformly.

    A question is kept only if its hash falls in the split's bucket, so splits never overlap,
    and repeated questions within a split are skipped.
    """
    return [problem for problem, _ in _draw(split, n, seed, levels)]


def variants(n: int, seed: int, levels: tuple[int, ...] = LEVELS, per_problem: int = 2) -> list[Problem]:
    """A transfer set in the manner of Functional MATH: each of the ``n`` test problems of
    ``generate("test", n, seed, levels)`` re-instantiated ``per_problem`` times with its stated
    numbers re-drawn from the ranges they came from. Names, items, events and the tree stay, so
    only the arithmetic differs; a model that memorised answers (or learned them from problems
    too close to these) loses accuracy here. Variants stay in the test bucket, so they are never
    a training or validation question, and ``meta["variant_of"]`` names the original.
    """
    problems: list[Problem] = []
    drawn = list(_draw("test", n, seed, levels))
    seen = {problem.question for problem, _ in drawn}
    short = 0
    for original, template in drawn:
        rng = random.Random(f"variant:{original.id}")
        made = 0
        for _ in range(VARIANT_ATTEMPTS):
            instance = template.instantiate([rng.randint(low, high) for low, high in template.ranges])
            if instance is None or instance[0] in seen or _bucket(instance[0]) not in _BUCKETS["test"]:
                continue
            question, meta = instance
            seen.add(question)
            problems.append(_problem(f"{original.id}-v{made}", question, meta | {"variant_of": original.id}, original.level))
            made += 1
            if made == per_problem:
                break
        short += made < per_problem
    if short:
        log.warning("toy variants: %d of %d test problems have fewer than %d variants", short, n, per_problem)
    return problems


def _ready_orders(steps: list[list], rng: random.Random) -> list[int]:
    """A random topological order of the step indices (independent steps in any order)."""
    deps = [{int(r[1:]) for r in step[1:] if isinstance(r, str)} for step in steps]
    done: list[int] = []
    while len(done) < len(steps):
        ready = [i for i in range(len(steps)) if i not in done and deps[i] <= set(done)]
        done.append(rng.choice(ready))
    return done


def reference_solution(meta: dict, rng: random.Random) -> str:
    """A valid solution in a randomly chosen form (see the module docstring)."""
    return _solution(meta, rng, slip=False)


def slipped_solution(meta: dict, rng: random.Random) -> str:
    """A solution in a random form with one arithmetic slip: one step's result off by 1 or 2,
    and the later steps computed correctly from the wrong value, so the final answer is
    (almost always) wrong; the pretraining corpus's share of human error. A problem where no
    slip keeps every value in 0..MAX_VALUE gets a valid solution."""
    return _solution(meta, rng, slip=True)


def _solution(meta: dict, rng: random.Random, slip: bool) -> str:
    steps, values = meta["steps"], list(meta["values"])
    connective = rng.random() < 0.5
    parts = [f"{who} has {n} {STEP_SEP}" for who, n in meta["people"].items() if rng.random() < 0.3]
    order = _ready_orders(steps, rng)
    if slip:
        values = _slipped_values(steps, values, order, rng) or values
    for i in order:
        op, x, y = steps[i]
        a, b = (values[int(r[1:])] if isinstance(r, str) else r for r in (x, y))
        if op in COMMUTATIVE and rng.random() < 0.5:
            a, b = b, a
        lead = f"{CONNECTIVE} " if connective and parts else ""
        parts.append(f"{lead}{a} {op} {b} = {values[i]} {STEP_SEP}")
    parts.append(f"{ANSWER_MARK} {values[-1]}")
    return " ".join(parts)


def _slipped_values(steps: list[list], values: list[int], order: list[int], rng: random.Random) -> list[int] | None:
    """The step values with step ``order[k]`` (k random) off by a small delta, propagated."""
    k = rng.randrange(len(order))
    for delta in rng.sample((-2, -1, 1, 2), 4):
        wrong = list(values)
        for position, i in enumerate(order):
            op, x, y = steps[i]
            if position >= k:
                a, b = (wrong[int(r[1:])] if isinstance(r, str) else r for r in (x, y))
                wrong[i] = OPS[op](a, b) + (delta if position == k else 0)
        if all(0 <= v <= MAX_VALUE for v in wrong):
            return wrong
    return None


def solution_forms(meta: dict, k: int, seed: int = 0) -> Iterator[str]:
    """Up to ``k`` distinct valid solutions (for tests and for the pretraining corpus)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    for _ in range(20 * k):
        form = reference_solution(meta, rng)
        if form not in seen:
            seen.add(form)
            yield form
            if len(seen) == k:
                return


@dataclass(frozen=True)
class StepCheck:
    """The exact verdict on one toy solution."""

    extracted: str | None  # the final answer after ####, if any
    answer_correct: bool
    steps_correct: bool  # every step matches the tree with the right arithmetic, none missing
    n_steps: int
    first_error: int | None  # index of the first wrong step (or len(steps) if one is missing)
    status: str  # "ok" | "no_answer" | "malformed"


def _parse_int(token: str) -> int | None:
    return int(token) if token.isdigit() else None


def check_solution(text: str, meta: dict, gold: str) -> StepCheck:
    """Check the final answer and every step of ``text`` against the problem's tree."""
    steps, values, people = meta["steps"], meta["values"], meta["people"]
    body, mark, tail = text.partition(ANSWER_MARK)
    extracted = tail.split()[0] if mark and tail.split() else None
    status = "ok" if extracted is not None else "no_answer"
    available: dict[str, int] = {}  # "#k" -> value, for steps already matched
    matched: set[int] = set()
    first_error: int | None = None
    segments = [s.split() for s in body.split(STEP_SEP) if s.strip()]
    for index, words in enumerate(segments):
        if words and words[0] == CONNECTIVE:
            words = words[1:]
        ok = False
        if len(words) == 3 and words[1] == "has":
            ok = people.get(words[0]) == _parse_int(words[2])
        elif len(words) == 5 and words[1] in OPS and words[3] == "=":
            a, b, c = (_parse_int(w) for w in (words[0], words[2], words[4]))
            ok = _match_step(words[1], a, b, c, steps, values, available, matched)
        else:
            status = "malformed" if status == "ok" else status
        if not ok and first_error is None:
            first_error = index
    complete = len(matched) == len(steps)
    if first_error is None and not complete:
        first_error = len(segments)
    return StepCheck(
        extracted=extracted,
        answer_correct=extracted == gold,
        steps_correct=first_error is None and complete and status == "ok",
        n_steps=len(segments),
        first_error=first_error,
        status=status,
    )


def _match_step(
    op: str,
    a: int | None,
    b: int | None,
    c: int | None,
    steps: list[list],
    values: list[int],
    available: dict[str, int],
    matched: set[int],
) -> bool:
    """Match ``a op b = c`` to an unmatched tree node whose inputs are ready; record it."""
    if a is None or b is None or c is None or OPS[op](a, b) != c:
        return False
    for i, (node_op, x, y) in enumerate(steps):
        if i in matched or node_op != op:
            continue
        inputs = []
        for ref in (x, y):
            if isinstance(ref, str) and ref not in available:
                break
            inputs.append(available[ref] if isinstance(ref, str) else ref)
        else:
            if (a, b) == tuple(inputs) or (op in COMMUTATIVE and (b, a) == tuple(inputs)):
                matched.add(i)
                available[f"#{i}"] = values[i]
                return True
    return False
