"""The build page's "Documents written" section (registered in apps.py through
builds.sections, which builds offers so that it imports no docs_engine code)."""

from __future__ import annotations

from typing import Any

from . import selectors

SHOWN = 100  # an evaluation build holds thousands: the page lists the first ones


def build_section(*, request: Any, build: Any) -> dict[str, Any] | None:
    rows = selectors.revisions_of_build(build=build)
    revisions = list(rows[: SHOWN + 1])
    if not revisions:
        return None
    total = len(revisions) if len(revisions) <= SHOWN else rows.count()
    return {
        "template": "docs_engine/_build_revisions.html",
        "revisions": revisions[:SHOWN],
        "total": total,
        "shown": SHOWN,
    }
