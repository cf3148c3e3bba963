"""Sections another app may add to the prompt page, so that the prompt library shows
what it does not own (the evals app's evaluations) without importing that app.

A section is a function called by `views.detail` with the request, the project and the
prompt. It returns None (nothing to show) or a dict with the `template` to include and
whatever that template reads; the page includes each one with it as `section`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Section = Callable[..., "dict[str, Any] | None"]

_SECTIONS: list[Section] = []


def register_prompt_section(section: Section) -> None:
    """Called from an AppConfig.ready; registering the same function twice is a no-op
    (ready() may run more than once in tests)."""
    if section not in _SECTIONS:
        _SECTIONS.append(section)


def prompt_sections(*, request: Any, project: Any, prompt: Any) -> list[dict[str, Any]]:
    found = (s(request=request, project=project, prompt=prompt) for s in _SECTIONS)
    return [section for section in found if section is not None]
