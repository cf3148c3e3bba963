"""Document paths and how a link in one document names another (pure).

A path is 1-10 lower-case segments (`guides/install`, `releases/1.2.0`). A link is
internal when it is `/docs/<path>` or relative (`install`, `../faq`, `#anchor`);
anything with a scheme, `//host` or another absolute path is external and not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from buildsite.errors import InvalidInput, Problem

SEGMENT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_PATH = 255
MAX_DEPTH = 10
DOCS_PREFIX = "/docs/"
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
UNSAFE_SCHEMES = ("javascript", "vbscript", "data", "file")


def path_problem(path: str) -> str | None:
    if not path:
        return "A document path is required."
    if len(path) > MAX_PATH:
        return f"A document path is at most {MAX_PATH} characters."
    segments = path.split("/")
    if len(segments) > MAX_DEPTH:
        return f"A document path has at most {MAX_DEPTH} segments."
    for segment in segments:
        if not SEGMENT.match(segment):
            return (
                f"'{path}' is not a document path: use lower-case segments of letters, "
                "digits, '.', '-' or '_' separated by '/' (for example guides/install)."
            )
    return None


def clean_path(raw: str, *, where: str = "path") -> str:
    """The canonical form of a user-given path, or InvalidInput."""
    path = (raw or "").strip().strip("/")
    problem = path_problem(path)
    if problem:
        raise InvalidInput([Problem(problem, where=where)])
    return path


def scheme_of(href: str) -> str | None:
    match = _SCHEME.match(href.strip())
    return match.group(0)[:-1].lower() if match else None


@dataclass(frozen=True)
class LinkTarget:
    path: str | None  # None: the link points into the same document
    anchor: str | None
    problem: str | None = None  # the link is internal but cannot name a document


def resolve_link(from_path: str, href: str) -> LinkTarget | None:
    """The document (and anchor) an href names, or None for an external link."""
    href = href.strip()
    if not href or scheme_of(href) or href.startswith("//"):
        return None
    target, _, anchor = href.partition("#")
    target = unquote(target.split("?", 1)[0])
    anchor = unquote(anchor) or None
    if not target:
        return LinkTarget(None, anchor)
    if target.startswith("/"):
        if not target.startswith(DOCS_PREFIX):
            return None
        parts = target[len(DOCS_PREFIX) :].split("/")
    else:
        parts = from_path.split("/")[:-1] + target.split("/")
    resolved: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return LinkTarget(None, anchor, "points above the top of the documentation")
            resolved.pop()
            continue
        resolved.append(part[:-3] if part.endswith(".md") else part)
    path = "/".join(resolved)
    problem = path_problem(path)
    if problem:
        return LinkTarget(None, anchor, f"'{target}' is not a valid document path")
    return LinkTarget(path, anchor)
