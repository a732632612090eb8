"""The toy world: disjoint seeded splits, several valid solution forms, exact step checking."""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest

from wcse.artifacts import digest
from wcse.toy import corpus, world
from wcse.toy.tokenizer import build_tokenizer, prompt


@pytest.fixture(scope="module")
def train():
    return world.generate("train", 400, 0)


def test_generation_is_seeded_and_splits_are_disjoint() -> None:
    assert [p.question for p in world.generate("test", 50, 0)] == [p.question for p in world.generate("test", 50, 0)]
    questions = {s: {p.question for p in world.generate(s, 1500, 0)} for s in ("train", "validation", "test")}
    assert not questions["train"] & questions["test"]
    assert not questions["train"] & questions["validation"]
    assert not questions["validation"] & questions["test"]


def test_problems_have_the_requested_levels_and_stay_in_the_vocabulary(train) -> None:
    tokenizer = build_tokenizer()
    assert {p.level for p in train} == set(world.LEVELS)
    for p in train:
        assert len(p.meta["steps"]) == p.level
        assert all(0 <= v <= world.MAX_VALUE for v in p.meta["values"])
        ids = tokenizer(prompt(p.question) + " " + p.solution).input_ids
        assert tokenizer.unk_token_id not in ids
        assert len(ids) < 128


def test_every_generated_form_is_correct_and_forms_differ(train) -> None:
    n_forms = []
    for p in train[:150]:
        forms = list(world.solution_forms(p.meta, 20, seed=1))
        n_forms.append(len(forms))
        for form in forms:
            check = world.check_solution(form, p.meta, p.answer)
            assert check.answer_correct and check.steps_correct and check.status == "ok", form
    assert min(n_forms) >= 2  # even one-step problems: phrasing / operand order / restatement
    assert sum(n_forms) / len(n_forms) > 8


def _problem(question_start: int = 12, gain: int = 5, loss: int = 3):
    steps = [["+", question_start, gain], ["-", "#0", loss]]
    values = [question_start + gain, question_start + gain - loss]
    return {"steps": steps, "values": values, "people": {"Mia": question_start}}, str(values[-1])


CASES = [
    # text, answer_correct, steps_correct, status, first_error
    ("12 + 5 = 17 . 17 - 3 = 14 . #### 14", True, True, "ok", None),
    ("Mia has 12 . so 5 + 12 = 17 . so 17 - 3 = 14 . #### 14", True, True, "ok", None),
    ("12 + 5 = 18 . 18 - 3 = 14 . #### 14", True, False, "ok", 0),  # slip, then a compensating slip
    ("12 + 6 = 18 . 18 - 4 = 14 . #### 14", True, False, "ok", 0),  # misread quantities, right total
    ("12 + 5 = 17 . 17 - 3 = 15 . #### 15", False, False, "ok", 1),  # arithmetic slip
    ("12 + 5 = 17 . #### 14", True, False, "ok", 1),  # a step is missing
    ("Mia has 11 . 12 + 5 = 17 . 17 - 3 = 14 . #### 14", True, False, "ok", 0),  # wrong restatement
    ("17 - 3 = 14 . 12 + 5 = 17 . #### 14", True, False, "ok", 0),  # uses a value before it exists
    ("12 + 5 = 17 . 17 - 3 = 14 .", False, False, "no_answer", None),
    ("12 plus 5 is 17 . #### 14", True, False, "malformed", 0),
]


@pytest.mark.parametrize("text,answer_ok,steps_ok,status,first_error", CASES)
def test_step_checker(text, answer_ok, steps_ok, status, first_error) -> None:
    meta, gold = _problem()
    check = world.check_solution(text, meta, gold)
    assert (check.answer_correct, check.steps_correct, check.status, check.first_error) == (
        answer_ok, steps_ok, status, first_error
    )


def test_subtraction_operands_are_ordered_but_sums_commute() -> None:
    meta, gold = _problem()
    assert world.check_solution("5 + 12 = 17 . 17 - 3 = 14 . #### 14", meta, gold).steps_correct
    assert not world.check_solution("12 + 5 = 17 . 3 - 17 = 14 . #### 14", meta, gold).steps_correct


def test_independent_steps_may_come_in_any_order() -> None:
    p = next(p for p in world.generate("train", 300, 3) if p.subject == "two_people" and p.level >= 3)
    orders = {tuple(line for line in f.split(" . ") if "=" in line) for f in world.solution_forms(p.meta, 40)}
    firsts = {order[0].replace("so ", "") for order in orders}
    assert len(firsts) >= 2, "two people's totals can be computed in either order"


def test_the_default_splits_are_pinned() -> None:
    """The shipped ladder and every cached sample were made from these exact problems: a change to
    the generator that moves them must be deliberate (rebuild the ladder, bump this digest)."""
    digests = {s: digest([asdict(p) for p in world.generate(s, n, 0)]) for s, n in (("train", 1000), ("test", 500))}
    assert digests == {"train": "9c219a2e5263624f", "test": "bfdee41b8ceeb34e"}


def _skeleton(question: str) -> list[str]:
    return ["N" if w.isdigit() else w for w in question.split()]


def _shape(meta: dict) -> list[tuple]:
    return [(op, *("#" if isinstance(r, str) and r.startswith("#") else "n" for r in (x, y))) for op, x, y in meta["steps"]]


def test_variants_keep_the_problem_and_redraw_its_numbers() -> None:
    originals = {p.id: p for p in world.generate("test", 200, 0)}
    variants = world.variants(200, 0, per_problem=3)
    assert len(variants) == 600 and variants == world.variants(200, 0, per_problem=3)  # seeded
    tokenizer = build_tokenizer()
    changed = []
    for v in variants:
        o = originals[v.meta["variant_of"]]
        assert v.id.startswith(o.id + "-v") and (v.level, v.subject) == (o.level, o.subject)
        assert _skeleton(v.question) == _skeleton(o.question)  # names, items, events, question kept
        assert _shape(v.meta) == _shape(o.meta) and list(v.meta["people"]) == list(o.meta["people"])
        assert all(0 <= x <= world.MAX_VALUE for x in v.meta["values"]) and v.answer == str(v.meta["values"][-1])
        check = world.check_solution(v.solution, v.meta, v.answer)
        assert check.answer_correct and check.steps_correct
        assert tokenizer.unk_token_id not in tokenizer(prompt(v.question) + " " + v.solution).input_ids
        numbers, before = ([w for w in q.split() if w.isdigit()] for q in (v.question, o.question))
        changed.append(sum(a != b for a, b in zip(numbers, before, strict=True)) / len(numbers))
    assert sum(changed) / len(changed) > 0.85  # most numbers are new, not just one per problem
    questions = [v.question for v in variants]
    assert len(set(questions)) == 600 and not set(questions) & {p.question for p in originals.values()}
    seen = {p.question for s in ("train", "validation") for p in world.generate(s, 3000, 0)}
    assert not set(questions) & seen  # variants stay in the test bucket


def test_a_template_refuses_numbers_that_leave_the_world() -> None:
    problem, template = next(world._draw("test", 1, 0, (1,)))
    assert template.instantiate(template.numbers) == (problem.question, problem.meta)
    loss = template.steps[0][0] == "-"
    extreme = [0 if loss else world.MAX_VALUE, world.MAX_VALUE]  # 0 - 99 < 0 or 99 + 99 > MAX_VALUE
    assert template.instantiate(extreme) is None



def test_slipped_solutions_are_wrong_from_the_slip_on_and_well_formed(train) -> None:
    wrong_answers = 0
    for p in train[:200]:
        text = world.slipped_solution(p.meta, random.Random(p.id))
        check = world.check_solution(text, p.meta, p.answer)
        assert check.status == "ok" and check.first_error is not None and not check.steps_correct, text
        wrong_answers += not check.answer_correct
    assert wrong_answers >= 190  # a slip carried through changes the answer, bar rare compensations


def test_corpus_documents_keep_one_house_style_and_hold_no_held_out_problem() -> None:
    tokenizer = build_tokenizer()
    docs = list(corpus.documents(300, 0))
    assert [d.text for d in docs] == [d.text for d in corpus.documents(300, 0)]
    assert [d.text for d in docs] != [d.text for d in corpus.documents(300, 1)]
    held_out = {p.question for s in ("validation", "test") for p in world.generate(s, 2000, 0)}
    kinds = {"solved": 0, "slipped": 0, "unsolved": 0, "facts": 0}
    for doc in docs:
        ids = tokenizer(doc.text).input_ids
        assert tokenizer.unk_token_id not in ids and len(ids) + 1 <= corpus.MAX_TOKENS  # + EOS
        for block in doc.blocks:
            kinds[block.kind] += 1
            if block.problem is None:
                assert "=" in block.text and not any(h in block.text for h in corpus.QUESTION_HEADERS)
                continue
            assert block.problem.question not in held_out
            assert block.text.startswith(f"{doc.style.question} {block.problem.question}")
            if block.kind == "unsolved":
                assert doc.style.answer not in block.text
                continue
            head, _, solution = block.text.partition(f" {doc.style.answer} ")
            n = block.text.split()[-2 if block.text.endswith(" .") else -1]
            assert solution.endswith(doc.style.closing.format(n=n))
            graded = world.check_solution(solution.replace(doc.style.closing.format(n=n), f"#### {n}"),
                                          block.problem.meta, block.problem.answer)
            assert graded.steps_correct == (block.kind == "solved"), block.text
    assert len({(d.style.question, d.style.answer, d.style.closing) for d in docs}) == 27  # 3 x 3 x 3
    problems = kinds["solved"] + kinds["slipped"]
    assert abs(kinds["slipped"] / problems - corpus.SLIP_RATE) < 0.04
    assert all(kinds.values())
