"""The build page's "Prompt runs" section (registered in apps.py through
builds.sections, which builds offers so that it imports no prompts code)."""

from __future__ import annotations

from typing import Any

from . import selectors

SHOWN = 100  # an evaluation build holds thousands: the page lists the first ones


def build_section(*, request: Any, build: Any) -> dict[str, Any] | None:
    rows = selectors.runs_of_build(build=build)
    runs = list(rows[: SHOWN + 1])
    if not runs:
        return None
    total = len(runs) if len(runs) <= SHOWN else rows.count()
    return {
        "template": "prompts/_build_runs.html",
        "runs": runs[:SHOWN],
        "total": total,
        "shown": SHOWN,
    }
