"""Which READY tasks go to workers now: pure, so the rules are tested without a database.

Order: priority, plus aging (waiting raises a task's priority, so nothing starves),
plus deadline urgency (a task whose deadline nears is preferred). Resource pools are
never over-committed; a task that does not fit blocks lower-ranked tasks from its pools
once it has waited `reserve_after` seconds, so large claims are not starved by a stream
of small ones.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

DEADLINE_HORIZON_SECONDS = 600.0
DEADLINE_WEIGHT = 100.0


@dataclass(frozen=True)
class Candidate:
    id: int
    priority: int
    waiting_since: float
    claims: Mapping[str, int] = field(default_factory=dict)
    deadline: float | None = None


@dataclass(frozen=True)
class Decision:
    dispatch: list[int]
    impossible: dict[int, str]


def effective_priority(c: Candidate, now: float, aging_per_minute: float) -> float:
    waited = max(0.0, now - c.waiting_since)
    score = c.priority + aging_per_minute * waited / 60.0
    if c.deadline is not None:
        remaining = c.deadline - now
        score += DEADLINE_WEIGHT * min(1.0, max(0.0, 1.0 - remaining / DEADLINE_HORIZON_SECONDS))
    return score


def rank(candidates: Sequence[Candidate], now: float, aging_per_minute: float) -> list[Candidate]:
    return sorted(
        candidates,
        key=lambda c: (-effective_priority(c, now, aging_per_minute), c.waiting_since, c.id),
    )


def choose(
    candidates: Sequence[Candidate],
    *,
    capacity: Mapping[str, int],
    in_use: Mapping[str, int],
    now: float,
    aging_per_minute: float = 1.0,
    reserve_after: float = 60.0,
    limit: int | None = None,
    instant: Collection[int] = frozenset(),
) -> Decision:
    """Pick tasks to dispatch. Pools missing from `capacity` are unlimited.

    `instant` names candidates that hold their claims for no time (nothing to run,
    ended where they are taken): one is chosen when its claims fit now, in its rank,
    and the capacity it would hold is free again for the next."""
    free = {pool: cap - in_use.get(pool, 0) for pool, cap in capacity.items()}
    reserved: set[str] = set()
    chosen: list[int] = []
    impossible: dict[int, str] = {}
    for c in rank(candidates, now, aging_per_minute):
        if limit is not None and len(chosen) >= limit:
            break
        limited = {p: n for p, n in c.claims.items() if p in capacity and n > 0}
        too_big = [p for p, n in limited.items() if n > capacity[p]]
        if too_big:
            p = too_big[0]
            impossible[c.id] = f"claims {p}: {limited[p]} but pool '{p}' has capacity {capacity[p]}"
            continue
        if any(p in reserved for p in limited):
            continue
        if all(n <= free[p] for p, n in limited.items()):
            for p, n in limited.items() if c.id not in instant else ():
                free[p] -= n
            chosen.append(c.id)
        elif now - c.waiting_since >= reserve_after:
            reserved.update(limited)
    return Decision(chosen, impossible)
