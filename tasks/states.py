"""The task state machine: one table of allowed transitions, checked in one place."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from buildsite.errors import Conflict


class TaskState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CACHED = "cached"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"


class BuildState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


S = TaskState
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.PENDING: frozenset({S.READY, S.UPSTREAM_FAILED, S.CANCELLED}),
    S.READY: frozenset({S.QUEUED, S.CACHED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.RETRYING, S.CANCELLED}),
    S.RETRYING: frozenset({S.QUEUED, S.CANCELLED}),
    # A build retry puts unsuccessful tasks back to the start; success is never undone.
    S.FAILED: frozenset({S.PENDING}),
    S.UPSTREAM_FAILED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
    S.SUCCEEDED: frozenset(),
    S.CACHED: frozenset(),
}
TERMINAL: frozenset[TaskState] = frozenset(
    {S.SUCCEEDED, S.FAILED, S.CACHED, S.UPSTREAM_FAILED, S.CANCELLED}
)
DONE_OK: frozenset[TaskState] = frozenset({S.SUCCEEDED, S.CACHED})
DONE_BAD: frozenset[TaskState] = frozenset({S.FAILED, S.UPSTREAM_FAILED, S.CANCELLED})
ACTIVE: frozenset[TaskState] = frozenset({S.QUEUED, S.RUNNING, S.RETRYING})


class InvalidTransition(Conflict):
    def __init__(self, old: str, new: str, task: str | None = None) -> None:
        where = f"task '{task}': " if task else ""
        super().__init__(
            f"{where}cannot go from {old} to {new}", from_state=str(old), to_state=str(new)
        )
        self.old = old
        self.new = new


def can_transition(old: TaskState | str, new: TaskState | str) -> bool:
    # States are str-valued, so a plain string finds its member without a TaskState()
    # call (this runs for every step of every task: 20,000 for a new 10,000-task build).
    targets = TRANSITIONS.get(old)  # type: ignore[arg-type]
    if targets is None:
        targets = TRANSITIONS[TaskState(old)]  # an unknown state raises ValueError
    if new in targets:
        return True
    TaskState(new)  # likewise
    return False


def check_transition(old: TaskState | str, new: TaskState | str, task: str | None = None) -> None:
    if not can_transition(old, new):
        raise InvalidTransition(str(old), str(new), task)


def sources_of(new: TaskState | str) -> frozenset[TaskState]:
    """Every state from which `new` may be entered (for conditional UPDATEs)."""
    return frozenset(old for old, targets in TRANSITIONS.items() if TaskState(new) in targets)


def build_state_of(states: Iterable[TaskState | str], *, started: bool) -> BuildState:
    """A build's state follows from its tasks' states."""
    seen = {TaskState(s) for s in states}
    if not seen or not seen <= TERMINAL:
        return BuildState.RUNNING if started else BuildState.QUEUED
    if S.FAILED in seen or S.UPSTREAM_FAILED in seen:
        return BuildState.FAILED
    if S.CANCELLED in seen:
        return BuildState.CANCELLED
    return BuildState.SUCCEEDED
