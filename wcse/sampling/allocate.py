"""Adaptive allocation of a fixed sampling budget over problems (DART-Math's question).

Uniform sampling spends S samples on every problem. The adaptive policies spend the same total,
``budget = problems x S``, in *waves*, reading the ground-truth verdicts of each wave before
drawing the next:

- ``stop_at_k``: each wave draws one more sample of every problem with fewer than ``k`` correct
  samples (and fewer than ``cap``); the last wave, when the budget cannot cover every active
  problem, goes to those first in a seeded order.
- ``difficulty`` (DART-Math's Prop2Diff): ``probe`` samples of every problem, then the rest of the
  budget in proportion to each problem's failure rate on them (largest remainders), at most
  ``cap`` per problem; problems solved every time get no more.

Sample j of a problem is the same draw under every policy (its seed depends only on the problem
and j), so the samples any policy draws are a prefix of that problem's uniform sequence: stores
nest, and a policy rerun after a crash reads back what it drew and draws only the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

ADAPTIVE = ("stop_at_k", "difficulty")
POLICIES = ("uniform", *ADAPTIVE)  # uniform: every problem its S samples (wcse.stages.sample)

Wave = list[tuple[str, int]]  # (problem id, sample index) to draw next


@dataclass(frozen=True)
class Policy:
    name: str
    budget: int  # samples in all
    cap: int  # at most this many samples of one problem
    k: int = 1  # stop_at_k: correct samples that retire a problem
    probe: int = 1  # difficulty: samples of every problem before the proportional share

    def __post_init__(self) -> None:
        if self.name not in ADAPTIVE:
            raise ValueError(f"allocation policy {self.name!r}: expected one of {ADAPTIVE}")
        if min(self.budget, self.cap, self.k, self.probe) < 1:
            raise ValueError(f"allocation {self}: budget, cap, k and probe must be >= 1")


def _order(problem_ids: Sequence[str], wave: int) -> list[str]:
    """A seeded order of problems for a partial wave, independent of which others are present."""
    return sorted(problem_ids, key=lambda pid: hashlib.sha256(f"{wave}:{pid}".encode()).hexdigest())


def waves(policy: Policy, problem_ids: Sequence[str], correct: Mapping[tuple[str, int], bool]) -> Generator[Wave, None, None]:
    """The waves of ``policy`` over ``problem_ids``. Before asking for the next wave, the caller
    puts each drawn sample's verdict in ``correct`` (a dict it keeps filling)."""
    counts = dict.fromkeys(problem_ids, 0)
    spent = 0

    def draw(wave: Wave) -> Wave:
        nonlocal spent
        for pid, _ in wave:
            counts[pid] += 1
        spent += len(wave)
        return wave

    def solved(pid: str) -> int:
        return sum(correct[(pid, j)] for j in range(counts[pid]))

    if policy.name == "stop_at_k":
        number = 0
        while spent < policy.budget:
            active = [pid for pid in problem_ids if counts[pid] < policy.cap and solved(pid) < policy.k]
            if not active:
                return
            chosen = set(active if len(active) <= policy.budget - spent else _order(active, number)[: policy.budget - spent])
            yield draw([(pid, counts[pid]) for pid in problem_ids if pid in chosen])
            number += 1
        return
    probe = min(policy.probe, policy.cap)
    if policy.budget < probe * len(problem_ids):
        raise ValueError(f"allocation difficulty: a budget of {policy.budget} cannot probe {len(problem_ids)} problems {probe} times")
    yield draw([(pid, j) for pid in problem_ids for j in range(probe)])
    extra = proportional(
        {pid: 1 - solved(pid) / probe for pid in problem_ids}, policy.budget - spent, policy.cap - probe
    )
    if any(extra.values()):
        yield draw([(pid, probe + j) for pid in problem_ids for j in range(extra[pid])])


def proportional(weights: Mapping[str, float], total: int, cap: int) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` by largest remainders, at most ``cap`` each
    (what a capped problem cannot take goes to the others); all-zero weights get nothing."""
    share = dict.fromkeys(weights, 0)
    open_ = {pid for pid, w in weights.items() if w > 0 and cap > 0}
    left = total
    while left > 0 and open_:
        mass = sum(weights[pid] for pid in open_)
        exact = {pid: left * weights[pid] / mass for pid in open_}
        give = {pid: min(int(exact[pid]), cap - share[pid]) for pid in open_}
        rest = left - sum(give.values())
        for pid in sorted(open_, key=lambda p: (-(exact[p] - int(exact[p])), p)):
            if rest == 0:
                break
            if share[pid] + give[pid] < cap:
                give[pid] += 1
                rest -= 1
        if sum(give.values()) == 0:
            break
        for pid, n in give.items():
            share[pid] += n
        left -= sum(give.values())
        open_ = {pid for pid in open_ if share[pid] < cap}
    return share
