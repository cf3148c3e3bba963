"""The build page's "Documents written" section (registered in apps.py through
builds.sections, which builds offers so that it imports no docs_engine code)."""

from __future__ import annotations

from typing import Any

from builds.sections import SHOWN, first_rows

from . import selectors


def build_section(*, request: Any, build: Any) -> dict[str, Any] | None:
    revisions, total = first_rows(selectors.revisions_of_build(build=build), SHOWN)
    if not revisions:
        return None
    return {
        "template": "docs_engine/_build_revisions.html",
        "revisions": revisions,
        "total": total,
        "shown": SHOWN,
    }
