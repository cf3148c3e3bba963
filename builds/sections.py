"""Sections another app may add to the build page, so that a build shows what its steps
made in apps the engine does not import (the documents a `document` step wrote, the
prompt runs a `prompt` step stored).

A section is a function called by `views.build_detail` with the request and the build
(whose project the caller may view). It returns None (nothing to show) or a dict with the
`template` to include and whatever that template reads; the page includes each one with
it as `section`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Section = Callable[..., "dict[str, Any] | None"]

_SECTIONS: list[Section] = []


def register_build_section(section: Section) -> None:
    """Called from an AppConfig.ready; registering the same function twice is a no-op
    (ready() may run more than once in tests)."""
    if section not in _SECTIONS:
        _SECTIONS.append(section)


SHOWN = 100  # rows a section lists: an evaluation build holds thousands


def first_rows(rows: Any, shown: int = SHOWN) -> tuple[list[Any], int]:
    """The first `shown` rows of a queryset and how many there are in all (counted only
    when there are more than shown)."""
    first = list(rows[: shown + 1])
    total = len(first) if len(first) <= shown else rows.count()
    return first[:shown], total


def build_sections(*, request: Any, build: Any) -> list[dict[str, Any]]:
    found = (s(request=request, build=build) for s in _SECTIONS)
    return [section for section in found if section is not None]
