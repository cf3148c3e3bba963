"""Step kinds: `run` lives here; `prompt` and `document` are registered by their apps.

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


Executor = Callable[[dict[str, Any], StepContext], dict[str, Any]]
_EXECUTORS: dict[str, Executor] = {}


def register_step(kind: str, executor: Executor) -> None:
    _EXECUTORS[kind] = executor


def executor_for(kind: str) -> Executor:
    try:
        return _EXECUTORS[kind]
    except KeyError:
        raise StepFailed(f"step kind '{kind}' is not available on this server") from None
