"""The build page's "Documents written" section (registered in apps.py through
builds.sections, which builds offers so that it imports no docs_engine code)."""

from __future__ import annotations

from typing import Any

from . import selectors


def build_section(*, request: Any, build: Any) -> dict[str, Any] | None:
    revisions = list(selectors.revisions_of_build(build=build))
    if not revisions:
        return None
    return {"template": "docs_engine/_build_revisions.html", "revisions": revisions}
