"""Dependency resolution: pure functions over `{task: [dependencies]}`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

from buildsite.errors import Problem

from .states import DONE_BAD, DONE_OK, TaskState

Needs = Mapping[str, Sequence[str]]


def graph_problems(needs: Needs, lines: Mapping[str, int] | None = None) -> list[Problem]:
    """Unknown dependencies, self-dependencies and cycles, each naming its tasks."""
    lines = lines or {}
    problems: list[Problem] = []
    for name, deps in needs.items():
        for dep in deps:
            if dep == name:
                problems.append(
                    Problem("a task cannot need itself", lines.get(name), f"tasks.{name}")
                )
            elif dep not in needs:
                problems.append(
                    Problem(f"needs unknown task '{dep}'", lines.get(name), f"tasks.{name}")
                )
    if problems:
        return problems
    try:
        TopologicalSorter(needs).prepare()
    except CycleError as exc:
        cycle: list[str] = list(exc.args[1])
        # graphlib reports the cycle closed (a, b, a) in dependency order; show it as
        # "a needs b needs a" reading the YAML the way people wrote it.
        path = " -> ".join(reversed(cycle))
        first = min(cycle[:-1], key=lambda n: lines.get(n, 0))
        problems.append(Problem(f"dependency cycle: {path}", lines.get(first), f"tasks.{first}"))
    return problems


def topological_order(needs: Needs) -> list[str]:
    """Dependencies before dependents; ties keep the definition's order."""
    position = {name: i for i, name in enumerate(needs)}
    sorter = TopologicalSorter(needs)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order


def dependents(needs: Needs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in needs}
    for name, deps in needs.items():
        for dep in deps:
            out[dep].append(name)
    return out


def downstream_of(needs: Needs, roots: Iterable[str]) -> set[str]:
    """Every task that depends, directly or not, on one of `roots` (roots excluded)."""
    children = dependents(needs)
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        for child in children[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def layers(needs: Needs) -> dict[str, int]:
    """Depth of each task (0 = no dependencies), for drawing the DAG layered."""
    depth: dict[str, int] = {}
    for name in topological_order(needs):
        depth[name] = 1 + max((depth[d] for d in needs[name]), default=-1)
    return depth


def unblocked(needs: Needs, states: Mapping[str, TaskState]) -> dict[str, TaskState]:
    """Which PENDING tasks can move now: READY when every dependency is done well,
    UPSTREAM_FAILED as soon as one dependency ended badly."""
    moves: dict[str, TaskState] = {}
    for name, deps in needs.items():
        if states[name] != TaskState.PENDING:
            continue
        dep_states = [states[d] for d in deps]
        if any(s in DONE_BAD for s in dep_states):
            moves[name] = TaskState.UPSTREAM_FAILED
        elif all(s in DONE_OK for s in dep_states):
            moves[name] = TaskState.READY
    return moves
