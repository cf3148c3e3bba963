"""The build page's "Prompt runs" section (registered in apps.py through
builds.sections, which builds offers so that it imports no prompts code)."""

from __future__ import annotations

from typing import Any

from builds.sections import SHOWN, first_rows

from . import selectors


def build_section(*, request: Any, build: Any) -> dict[str, Any] | None:
    runs, total = first_rows(selectors.runs_of_build(build=build), SHOWN)
    if not runs:
        return None
    return {"template": "prompts/_build_runs.html", "runs": runs, "total": total, "shown": SHOWN}
