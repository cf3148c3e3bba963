"""Workspace paths and the globs that pick them (`artifacts:` and `inputs:`).

Pure: no disk, no database. One matcher serves both sides of a file's way: the worker
picks the files a task stores with it, and settling picks a task's inputs among the
files it will be given, so the two can never disagree about what a pattern means.

A pattern is a relative path with `*` (within one directory), `**` (any number of
directories), `?` and `[...]`. A pattern that names a directory takes every file
under it, as GitLab's `artifacts: paths:` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import PurePosixPath

MAX_PATTERN_LENGTH = 500


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be used, or None: it must stay inside the workspace."""
    if not pattern or not pattern.strip():
        return "a path pattern must not be empty"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"a path pattern is at most {MAX_PATTERN_LENGTH} characters"
    if pattern.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", pattern):
        return f"{pattern!r} is absolute: paths are relative to the task's workspace"
    if "\\" in pattern or "\0" in pattern:
        return f"{pattern!r}: use '/' between directories"
    if ".." in PurePosixPath(pattern).parts:
        return f"{pattern!r} leaves the workspace ('..')"
    try:
        _regex(pattern)
    except re.error as exc:
        return f"{pattern!r} is not a valid pattern: {exc.msg}"
    return None


def path_problem(path: str) -> str | None:
    """Why `path` is not a plain relative file path inside a workspace, or None (used
    for stored artifact paths and for the paths a download asks for)."""
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        return "not a relative path"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "not a plain relative path"
    return None


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    parts = [p for p in pattern.strip("/").split("/") if p not in ("", ".")]
    if not parts:  # "." or "./": the whole workspace
        return re.compile(".*", re.DOTALL)
    out = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            # any number of directories (zero included); as the last part, anything below
            out += ".*" if last else "(?:[^/]+/)*"
            continue
        out += _segment(part) + ("" if last else "/")
    # The pattern names the path itself or a directory above it.
    return re.compile(f"(?:{out})(?:/.*)?", re.DOTALL)


def _segment(part: str) -> str:
    out, i = "", 0
    while i < len(part):
        char = part[i]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[" and (end := part.find("]", i + 2)) != -1:
            body = part[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\")
            if body.startswith("^"):  # a literal ^, as in fnmatch
                body = "\\" + body
            out += "[" + ("^" if negate else "") + body + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return out


def matches(pattern: str, path: str) -> bool:
    """Whether the relative file `path` is picked by `pattern`."""
    return _regex(pattern).fullmatch(path) is not None


def pick(patterns: Iterable[str], paths: Iterable[str]) -> dict[str, list[str]]:
    """The paths each pattern picks (sorted; an empty list for a pattern that picks none)."""
    paths = sorted(paths)
    return {pattern: [p for p in paths if matches(pattern, p)] for pattern in patterns}
