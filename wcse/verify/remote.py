"""Tests that model-written code cannot fool: the tests run in one process, the code in another.

A test such as ``assert f(x) == y`` run in the code's own process can be passed without solving
anything: ``f`` may return an object whose ``__eq__`` is always true (``unittest.mock.ANY`` is
one), patch ``math.isclose``, shadow ``set``, or walk the frames up to the harness and forge its
pass marker. So the code runs in a *candidate* process that only answers requests
(:func:`serve`), and the tests run in a *judge* process (:class:`JudgeGlobals`) in which every
name the code must provide is a :class:`Remote`: calling it sends the call to the candidate,
and the result comes back as plain data, which the tests then compare with their own,
untouched, builtins. The judge never runs a line of the candidate's code and holds none of its
objects, and the candidate never sees the tests, only the arguments of each call.

What crosses the pipe is JSON (:func:`encode`, :func:`decode`): ``None``, bools, ints, floats
(NaN and infinities included), complex numbers, strings, bytes, the builtin types (by name: each
side's own ``int``), and lists, tuples, dicts, sets and frozensets of them. A subclass of one of
these crosses as its base (a ``Counter`` as a dict, a namedtuple as a tuple, an ``IntEnum`` as an
int): its content is kept and its methods are not. Anything else stays in the candidate and
crosses as a handle, a :class:`Remote` that the judge can pass back, call, or ask for its
attributes, items, ``len``, ``bool``, ``str`` or ``repr``, each answered as data again, but that
never decides a comparison: ``==`` is identity.

An exception raised by the candidate's code reaches the tests as :class:`CandidateError` (a
``MemoryError`` as itself, so that the status stays ``memory``; the AttributeError of an attribute
and the TypeError of a ``len`` as themselves, which ``hasattr`` and ``list()`` expect): never as
``StopIteration``, which would end an ``all(map(...))`` early, nor as ``SystemExit``.

Both processes run this module under the sandbox (:mod:`wcse.verify.sandbox_child`); the
parent only starts them (:func:`wcse.verify.sandbox.run_judged`).
"""

from __future__ import annotations

import builtins
import importlib
import json
import sys
from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported at run time: see wcse.verify.sandbox_child
if TYPE_CHECKING:
    from typing import IO, Any

MAX_REPLY_BYTES = 1 << 24  # one answer of the candidate's, encoded; a larger one fails the test
MAX_MESSAGE_CHARS = 1000  # of an exception's message
CANDIDATE = "__candidate__"  # the judge's function that names one of the candidate's globals
SAFE_INT = 1 << 62  # ints beyond this cross as hex text: JSON readers and repr() limits differ


class CandidateError(Exception):
    """The candidate's code raised (``kind``: the exception's type name), its process ended, or
    its answer is not data (``kind`` empty)."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


def encode(value: Any, handle: Callable[[Any], int]) -> Any:
    """``value`` as JSON-ready data; ``handle(value)`` gives the handle of anything that is not
    builtin data (or raises, where only data may cross). A subclass is read through its base's
    own methods, so what crosses is its content."""
    if value is None or isinstance(value, bool):  # bool cannot be subclassed
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        value = int.__int__(value)
        return value if -SAFE_INT < value < SAFE_INT else {"int": hex(value)}
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, complex):
        return {"complex": [complex.real.__get__(value), complex.imag.__get__(value)]}
    for base in (bytearray, bytes):
        if isinstance(value, base):
            return {base.__name__: base.hex(value)}
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return {base.__name__: [encode(item, handle) for item in base.__iter__(value)]}
    if isinstance(value, dict):
        return {"dict": [[encode(k, handle), encode(v, handle)] for k, v in dict.items(value)]}
    if isinstance(value, type) and getattr(builtins, type.__getattribute__(value, "__name__"), None) is value:
        return {"type": value.__name__}  # MBPP task 533 passes int, str, float
    return {"handle": handle(value)}


_SEQUENCES: dict[str, type] = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def decode(data: Any, resolve: Callable[[int], Any]) -> Any:
    """The value that :func:`encode` made ``data`` of: builtin objects only, bar the handles,
    which ``resolve`` turns into objects. ValueError (or TypeError: an unhashable key) on
    anything that :func:`encode` does not make."""
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not dict or len(data) != 1:
        raise ValueError(f"not an encoded value: {type(data).__name__}")
    ((tag, payload),) = data.items()
    if tag in _SEQUENCES and type(payload) is list:
        return _SEQUENCES[tag](decode(item, resolve) for item in payload)
    if tag == "dict" and type(payload) is list and all(type(p) is list and len(p) == 2 for p in payload):
        return {decode(k, resolve): decode(v, resolve) for k, v in payload}
    if tag == "int" and type(payload) is str:
        return int(payload, 16)
    if (
        tag == "complex"
        and type(payload) is list
        and len(payload) == 2
        and all(type(x) is float for x in payload)
    ):
        return complex(*payload)
    if tag in ("bytes", "bytearray") and type(payload) is str:
        return (bytes if tag == "bytes" else bytearray).fromhex(payload)
    if tag == "type" and type(payload) is str and isinstance(getattr(builtins, payload, None), type):
        return getattr(builtins, payload)
    if tag == "handle" and type(payload) is int:
        return resolve(payload)
    raise ValueError(f"not an encoded value: tag {tag!r}")


# ------------------------------------------------------------------------------ the candidate

# What the judge may ask of the candidate's objects; each answer goes back as data or a handle.
OPERATIONS: dict[str, Callable[..., Any]] = {
    "call": lambda target, args, kwargs: target(*args, **kwargs),
    "getattr": getattr, "list": list, "len": len, "bool": bool, "str": str, "repr": repr,
}  # fmt: skip


def serve(namespace: dict[str, Any], requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer the judge's requests, one JSON line each, until it closes its end. Runs in the
    candidate's process after its code: everything here is the candidate's to subvert, and
    nothing it sends back is more than a claim about its own answers."""
    objects: list[Any] = []
    handles: dict[int, int] = {}  # id(object) -> handle, so one object keeps one handle

    def handle(value: Any) -> int:
        if id(value) not in handles:
            handles[id(value)] = len(objects)
            objects.append(value)
        return handles[id(value)]

    for line in requests:
        try:
            op, *args = json.loads(line)
            if op == "global":
                (name,) = args
                if name not in namespace:
                    raise NameError(f"name {name!r} is not defined")
                result = namespace[name]
            else:
                result = OPERATIONS[op](*(decode(arg, objects.__getitem__) for arg in args))
            reply = json.dumps({"value": encode(result, handle)})
        except BaseException as err:  # noqa: BLE001 - whatever the code raised is its answer
            reply = json.dumps({"error": [type(err).__name__, _message(err)]})
        replies.write(reply.encode() + b"\n")
        replies.flush()


def _message(err: BaseException) -> str:
    try:
        return str(err)[:MAX_MESSAGE_CHARS]
    except Exception:  # noqa: BLE001 - a message that cannot be made is no message
        return ""


# ---------------------------------------------------------------------------------- the judge


class Remote:
    """One of the candidate's objects, seen from the judge (see the module docstring)."""

    __slots__ = ("_channel", "_handle")

    def __init__(self, channel: Channel, handle: int) -> None:
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_handle", handle)

    def _ask(self, op: str, *args: Any, native: type[Exception] | None = None) -> Any:
        """The candidate's answer; ``native``: the one exception that stays itself, for the
        protocols that expect it (``hasattr`` an AttributeError, ``list()``'s length hint a
        TypeError)."""
        try:
            return self._channel.request(op, self, *args)
        except CandidateError as err:
            if native is not None and err.kind == native.__name__:
                raise native(str(err)) from None
            raise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask("call", list(args), kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # Python's own probes (copy, pickle, ...) stay here
            raise AttributeError(name)
        return self._ask("getattr", name, native=AttributeError)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the candidate's objects are read-only to the tests")

    def __iter__(self) -> Any:
        return iter(self._ask("list"))

    def __len__(self) -> int:
        return self._ask("len", native=TypeError)

    def __bool__(self) -> bool:
        return self._ask("bool")

    def __str__(self) -> str:
        return self._ask("str")

    def __repr__(self) -> str:
        return self._ask("repr")


class Channel:
    """The judge's end of the pipes to the candidate: one request, then its reply."""

    def __init__(self, requests: IO[bytes], replies: IO[bytes]) -> None:
        self._requests, self._replies = requests, replies
        self._remotes: dict[int, Remote] = {}

    def _remote(self, handle: int) -> Remote:
        if handle not in self._remotes:
            self._remotes[handle] = Remote(self, handle)
        return self._remotes[handle]

    def request(self, op: str, *args: Any) -> Any:
        """Send ``op`` with ``args`` (data and handles only), return the candidate's answer."""
        message = json.dumps([op, *(encode(arg, _handle_of) for arg in args)]).encode() + b"\n"
        try:
            self._requests.write(message)
            self._requests.flush()
        except BrokenPipeError:
            raise CandidateError("the candidate's process has ended") from None
        line = self._replies.readline(MAX_REPLY_BYTES + 1)
        if not line.endswith(b"\n"):
            raise CandidateError(
                "an answer over the size limit" if line else "the candidate's process has ended"
            )
        try:
            reply = json.loads(line)
            if type(reply) is not dict or len(reply) != 1 or not {"value", "error"} & reply.keys():
                raise ValueError("not a reply")
            if "value" in reply:
                return decode(reply["value"], self._remote)
            name, message = (str(part) for part in reply["error"])
        except (ValueError, TypeError, RecursionError) as err:
            raise CandidateError(f"an unreadable answer ({err})") from None
        if name == "MemoryError":
            raise MemoryError(message)
        raise CandidateError(f"{name}: {message}", name)


def _handle_of(value: Any) -> int:
    if type(value) is Remote:
        return object.__getattribute__(value, "_handle")
    raise CandidateError(f"a {type(value).__name__} cannot be passed to the candidate's code")


class JudgeGlobals(dict):  # of str to Any (typing is not imported at run time)
    """The tests' namespace. A name the tests do not define is, in order: a builtin, a standard
    library module (imported here, so the tests never use the candidate's, perhaps patched,
    one), or the candidate's global of that name, as data or a :class:`Remote`. A name that the
    code must provide although it is also a builtin (MBPP task 126 defines ``sum``) is bound
    explicitly with ``name = __candidate__('name')``."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(__name__="__main__", __builtins__=builtins)
        self[CANDIDATE] = lambda name: channel.request("global", name)

    def __missing__(self, name: str) -> Any:
        if hasattr(builtins, name):
            return getattr(builtins, name)
        if name in sys.stdlib_module_names:
            value = importlib.import_module(name)
        else:
            value = self[CANDIDATE](name)
        self[name] = value
        return value
