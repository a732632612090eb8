"""The method's stage graph, declared once.

``ORDER`` is every stage in the order a run executes them; each stage module declares what it
needs, plans and builds (:class:`wcse.stages.base.Stage`). A run executes the stages named in
``stages=[...]`` (default: all but the opt-in ones), after planning every stage they need and
checking that what is not selected is already in the cache.

    python -m wcse.stages        # prints the graph: each stage, what it needs and what it builds
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wcse.stages.base import Stage

ORDER = ("dataset", "pretrain", "sample", "verify", "metrics", "train", "evaluate", "report")
OPT_IN = ("pretrain",)  # runs only when named: it rebuilds the toy ladder (maintainers)
DEFAULT = tuple(name for name in ORDER if name not in OPT_IN)


def graph() -> tuple[Stage, ...]:
    """The stages in ``ORDER`` (imported on first use: the config schema needs only the names)."""
    stages = tuple(import_module(f"wcse.stages.{name}").STAGE for name in ORDER)
    for position, stage in enumerate(stages):
        later = [need for need in stage.needs if need not in ORDER[:position]]
        if stage.name != ORDER[position] or later:
            raise RuntimeError(f"stage {stage.name!r}: misplaced in ORDER or needs a later stage: {later}")
    return stages


def describe() -> str:
    """The graph as a markdown table, a stage a row (what ``python -m wcse.stages`` prints)."""
    rows = ["| stage | needs | builds |", "|---|---|---|"]
    for stage in graph():
        opt = " (opt-in: runs only when named)" if stage.name in OPT_IN else ""
        rows.append(f"| `{stage.name}` | {', '.join(stage.needs) or '-'} | {stage.output}{opt} |")
    return "\n".join(rows)
