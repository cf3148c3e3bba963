"""Step kinds: each app registers its own (`run` in builds, `prompt` in prompts,
`document` in docs_engine) from its AppConfig.ready.

An executor takes the rendered step and a StepContext, returns the outputs it adds to
the task, and raises StepFailed with a message for the task log when it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class StepFailed(Exception):
    """The step did its work and the work failed (exit code, validation, ...).
    `outputs` still reach the task, so a failed shell step shows its exit code."""

    def __init__(self, message: str, outputs: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outputs = outputs or {}


class StepCancelled(Exception):
    pass


@dataclass
class StepContext:
    project: Any
    build: Any
    task: Any
    workspace: Path
    env: dict[str, str]
    timeout: float
    log: Callable[[str], None]
    should_stop: Callable[[], bool]
    outputs: dict[str, Any] = field(default_factory=dict)
    task_spec: dict[str, Any] = field(default_factory=dict)  # limits, network
    # The secrets the task declares, by name: shell steps get them as variables. No
    # other secret of the project reaches a step.
    secrets: dict[str, str] = field(default_factory=dict)
    # What no output may show (every secret of the project, vault.rules.masking_terms):
    # a step that keeps output of its own, such as a shell step's tail, masks it.
    hidden: tuple[str, ...] = ()


Executor = Callable[[dict[str, Any], StepContext], dict[str, Any]]
# Extra checks of a step's definition: (message, key the message is about) pairs.
Checker = Callable[[dict[str, Any]], list[tuple[str, str]]]


def _no_checks(step: dict[str, Any]) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class StepKind:
    """What the engine knows of a step kind, registered by the app that owns it: the
    key that names the kind, the keys a step of it may have, what it claims of the
    project's pools on top of the task's claims, extra definition checks, and how it
    runs. The engine names no kind itself."""

    name: str
    keys: frozenset[str]
    run: Executor
    claims: dict[str, int] = field(default_factory=dict)
    check: Checker = _no_checks


_KINDS: dict[str, StepKind] = {}


def register_step(kind: StepKind) -> None:
    _KINDS[kind.name] = kind


def step_kinds() -> dict[str, StepKind]:
    """The registered kinds, in registration order (INSTALLED_APPS order)."""
    return _KINDS


def kind_of(step: dict[str, Any]) -> str:
    """The kind of a validated step: the one registered kind key it has."""
    return next(name for name in _KINDS if name in step)


def executor_for(kind: str) -> Executor:
    try:
        return _KINDS[kind].run
    except KeyError:
        raise StepFailed(f"step kind '{kind}' is not available on this server") from None
