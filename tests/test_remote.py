"""What crosses between the code's process and the tests' (wcse.verify.remote): the codec on its
own, then, in real sandboxed runs, the unusual but honest answers that must still count."""

from __future__ import annotations

import collections
import enum
import json
import math

import pytest

from wcse.records import Problem
from wcse.verify.code import check
from wcse.verify.remote import decode, encode
from wcse.verify.sandbox import Limits, run_judged

LIMITS = Limits(timeout_s=10)


def _no_handles(value: object) -> int:
    raise AssertionError(f"{value!r} should have crossed as data")


def _round_trip(value: object) -> object:
    return decode(json.loads(json.dumps(encode(value, _no_handles))), _no_handles)


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, -7, 2**62 - 1, 2**62, -(2**20000), 1.5, -0.0, math.inf, 1e-300,
        1 + 2j, "", "héllo\n\udcff", b"\x00\xff", bytearray(b"ab"), [], (), set(), frozenset(),
        [1, [2, (3, {4})]], {"a": [1], (1, 2): frozenset({3}), None: {}}, (1,), {1.5: "x"}, int, str,
    ],
    ids=lambda value: type(value).__name__,  # an id of str(2**20000) would exceed int's str limit
)  # fmt: skip
def test_builtin_data_crosses_unchanged(value: object) -> None:
    result = _round_trip(value)
    assert type(result) is type(value) and result == value
    if isinstance(value, dict):
        assert [type(k) for k in result] == [type(k) for k in value]


def test_nan_crosses_as_nan() -> None:
    assert math.isnan(_round_trip(math.nan))


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (collections.Counter("aab"), {"a": 2, "b": 1}),
        (collections.OrderedDict(b=1, a=2), {"b": 1, "a": 2}),
        (collections.defaultdict(list, x=[1]), {"x": [1]}),
        (collections.namedtuple("P", "x y")(1, 2), (1, 2)),
        (Colour.RED, 1),
        (type("S", (str,), {"__eq__": lambda self, other: True, "__hash__": str.__hash__})("abc"), "abc"),
    ],
    ids=["Counter", "OrderedDict", "defaultdict", "namedtuple", "IntEnum", "str-subclass"],
)
def test_a_subclass_crosses_as_its_base(value: object, expected: object) -> None:
    result = _round_trip(value)
    assert type(result) is type(expected) and result == expected


def test_other_objects_cross_as_handles() -> None:
    objects: list[object] = []
    encoded = encode(
        [collections.deque(), len, math, lambda: 1], lambda v: objects.append(v) or len(objects) - 1
    )
    assert encoded == {"list": [{"handle": 0}, {"handle": 1}, {"handle": 2}, {"handle": 3}]}
    assert decode(encoded, objects.__getitem__) == objects


@pytest.mark.parametrize(
    "data",
    [[1, 2], {"list": [1], "tuple": []}, {"eval": "1"}, {"int": 5}, {"complex": [1, 2]}, {"type": "open"},
     {"type": "nope"}, {"dict": [[1]]}, {"bytes": "zz"}, {"handle": "0"}],
)  # fmt: skip
def test_decode_refuses_anything_encode_does_not_make(data: object) -> None:
    with pytest.raises(ValueError):
        decode(data, lambda handle: None)


def test_decode_refuses_an_unhashable_key() -> None:
    with pytest.raises(TypeError):
        decode({"set": [{"list": []}]}, lambda handle: None)


# ------------------------------------------------------------------- honest answers, sandboxed


def _mbpp(tests: list[str], solution: str = "", setup: str = "") -> Problem:
    return Problem(
        id="mbpp-t", question="", answer="", solution=solution, meta={"tests": tests, "setup": setup}
    )


HONEST = {
    # MBPP 40 and 653 return a Counter and a defaultdict, compared with dicts.
    "Counter": (["assert freq('aab') == {'a': 2, 'b': 1}"], "from collections import Counter\ndef freq(s):\n    return Counter(s)"),
    # MBPP 601 builds the code's own Pair objects, which cross to the code as handles.
    "objects-as-arguments": (
        ["assert longest([Pair(1, 2), Pair(3, 4)]) == 2"],
        "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\ndef longest(pairs):\n    return len(pairs)",
    ),
    # MBPP 533 passes builtin types.
    "types-as-arguments": (["assert drop((1, 'a', 2.5), int) == ['a', 2.5]"],
                           "def drop(xs, kind):\n    return [x for x in xs if not isinstance(x, kind)]"),
    "generator": (["assert list(evens(5)) == [0, 2, 4]"], "def evens(n):\n    return (i for i in range(n) if i % 2 == 0)"),
    "attribute-len-str": (
        ["assert box(3).value == 3", "assert len(box(2)) == 2", "assert str(box(1)) == 'Box(1)'", "assert box(1)"],
        "class Box:\n    def __init__(self, v):\n        self.value = v\n    def __len__(self):\n        return self.value\n"
        "    def __str__(self):\n        return f'Box({self.value})'\ndef box(v):\n    return Box(v)",
    ),
    "keyword-arguments": (["assert scale(2, factor=3) == 6"], "def scale(x, factor=1):\n    return x * factor"),
    "big-int-and-nan": (["assert fact(30) == 265252859812191058636308480000000", "assert nan() != nan()"],
                        "import math\ndef fact(n):\n    return math.factorial(n)\ndef nan():\n    return float('nan')"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HONEST))
def test_honest_answers_of_unusual_types_pass(case: str) -> None:
    tests, code = HONEST[case]
    assert check("mbpp", code, _mbpp(tests), LIMITS)[::2] == (True, "ok")


def test_a_builtin_name_the_task_defines_is_the_codes() -> None:
    """MBPP 126 asks for a function called ``sum``: the tests call the code's, because the
    reference solution defines it; other builtins the tests use stay their own."""
    problem = _mbpp(
        ["assert sum(10, 15) == 6", "assert set([sum(4, 6)]) == {3}"], solution="def sum(a, b):\n    pass"
    )
    code = "def sum(a, b):\n    total = 0\n    for d in range(1, min(a, b) + 1):\n        if a % d == 0 and b % d == 0:\n"
    code += "            total += d\n    return total"
    assert check("mbpp", code, problem, LIMITS)[::2] == (True, "ok")
    assert check("mbpp", code.replace("total += d", "total += 1"), problem, LIMITS)[::2] == (False, "ok")


def test_setup_objects_reach_the_tests_as_handles() -> None:
    problem = _mbpp(["assert size(root) == 2"], setup="root = Node(Node())")
    code = "class Node:\n    def __init__(self, child=None):\n        self.child = child\n"
    code += "def size(n):\n    return 0 if n is None else 1 + size(n.child)"
    assert check("mbpp", code, problem, LIMITS)[::2] == (True, "ok")


@pytest.mark.parametrize(
    ("code", "status", "who"),
    [
        (
            "def f():\n    return len(bytearray(10 * 2**30))",
            "memory",
            "judge",
        ),  # raised in the code, re-raised in the tests
        ("x = bytearray(10 * 2**30)\ndef f():\n    return 1", "memory", "candidate"),
        ("def f():\n    while True:\n        print('spam')", "output_limit", "candidate"),
        ("def f():\n    while True:\n        pass", "timeout", "judge"),
        ("import socket\ndef f():\n    socket.socket()", "blocked", "candidate"),
        ("def f():\n    return 1", "passed", "judge"),
        ("def f():\n    return 2", "failed", "judge"),
        ("def f(:\n    return 1", "failed", "judge"),
    ],
)
def test_run_judged_statuses(code: str, status: str, who: str) -> None:
    judged = run_judged(code, "assert f() == 1\n", Limits(timeout_s=2, output_bytes=1024))
    assert judged.status == status
    assert getattr(judged, who).status == status


def test_tests_that_never_call_the_code_pass_only_code_that_ran_to_its_end() -> None:
    assert run_judged("x = 1\n", "assert True\n", LIMITS).status == "passed"
    assert run_judged("raise ValueError('broken')\n", "assert True\n", LIMITS).status == "failed"
