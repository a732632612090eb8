"""What a setting may hold, declared once beside its field, and the one check of a composed
config against the schema.

Hydra checks types, and for ``key=value`` that the key exists. It does not check ``+key=value``:
it applies an append with ``OmegaConf.update(..., force_add=True)``, which bypasses struct mode
by design, so ``+sampler.temprature=0.01`` (the form Hydra's own "Could not override" message
suggests) would be accepted and ignored. :func:`check` walks the composed config instead: every
key of a node typed by a dataclass must be one of its fields, and every value must lie in its
field's :class:`Domain` (``batch_size: int = bounded(64, ge=1)``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from wcse.errors import ConfigError

DOMAIN = "wcse.domain"  # the field metadata key holding its Domain
_NO_DEFAULT = object()


@dataclasses.dataclass(frozen=True)
class Domain:
    """The numbers a setting may be: ``ge``/``gt`` a lower bound (inclusive/exclusive), ``le`` an
    upper one. A list's or a dict's domain is each item's."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    def __contains__(self, value: Any) -> bool:
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
        )

    def __str__(self) -> str:
        bounds = [f"{op} {_number(bound)}" for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le)) if bound is not None]
        return " and ".join(bounds)


def bounded(
    default: Any = _NO_DEFAULT,
    *,
    default_factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> Any:
    """A dataclass field with its domain: ``temperature: float = bounded(0.7, ge=0)``.

    ``None`` stays allowed where the field's type allows it (``limit: int | None``)."""
    metadata = {DOMAIN: Domain(ge=ge, gt=gt, le=le)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    if default is _NO_DEFAULT:
        raise TypeError("bounded() needs a default or a default_factory")
    return dataclasses.field(default=default, metadata=metadata)


def check(cfg: DictConfig) -> None:
    """Raise ConfigError naming every undeclared key and every value outside its domain."""
    problems = list(_problems(cfg, ""))
    if problems:
        raise ConfigError("; ".join(problems))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


@functools.cache
def _nullable(schema: type) -> frozenset[str]:
    """The fields of ``schema`` whose type admits None."""
    hints = typing.get_type_hints(schema)
    return frozenset(name for name, hint in hints.items() if type(None) in typing.get_args(hint))


def _problems(node: DictConfig, prefix: str) -> Iterator[str]:
    schema = OmegaConf.get_type(node)
    declared = {f.name: f for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    for key in node.keys():
        name = f"{prefix}{key}"
        if declared is not None and key not in declared:
            if not prefix and key == "hydra":  # Hydra's own node, when a caller asks for it
                continue
            close = difflib.get_close_matches(str(key), declared, n=1)
            yield f"{name}: unknown key{f' (did you mean {prefix}{close[0]}?)' if close else ''}"
            continue
        if OmegaConf.is_missing(node, key):
            continue
        value = node[key]
        if isinstance(value, DictConfig):
            yield from _problems(value, f"{name}.")
        elif isinstance(value, ListConfig):
            for item in value:
                if isinstance(item, DictConfig):
                    yield from _problems(item, f"{name}.")
        domain = declared[key].metadata.get(DOMAIN) if declared is not None else None
        if domain is None or value is None:
            continue
        nullable = " (or null)" if key in _nullable(schema) else ""
        if isinstance(value, DictConfig):
            items = [(f"{name}.{k}", v) for k, v in value.items()]
        elif isinstance(value, ListConfig):
            items = [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(name, value)]
        for where, item in items:
            if item not in domain:
                yield f"{where}={_number(item)}: must be {domain}{nullable}"
