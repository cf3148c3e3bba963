"""Checks another app may attach to label moves, so that the prompt library can enforce
rules it does not own (the evals app's gated labels) without importing that app.

A check is called by `services.set_label` inside its transaction, before the label
moves, with the prompt, the label, the version it is to point at and whether the move
is forced. It raises a DomainError (Conflict) to refuse the move, or returns the id of
the evaluation that justifies it (None when the label is not gated, or when forced).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LabelCheck = Callable[..., int | None]

_CHECKS: list[LabelCheck] = []


def register_label_check(check: LabelCheck) -> None:
    """Called from an AppConfig.ready; registering the same function twice is a no-op
    (ready() may run more than once in tests)."""
    if check not in _CHECKS:
        _CHECKS.append(check)


def check_label_move(*, prompt: Any, label: str, version: Any, force: bool) -> int | None:
    """The evaluation that justifies the move (the first check that names one), or None;
    a refusing check raises."""
    justified: int | None = None
    for check in _CHECKS:
        found = check(prompt=prompt, label=label, version=version, force=force)
        if justified is None:
            justified = found
    return justified
