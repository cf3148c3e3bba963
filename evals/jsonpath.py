"""A small, safe JSON path subset for `json_path` assertions. Pure: no database.

Syntax: `$`, then any of `.key`, `['key']` / `["key"]`, `[index]` (negative counts from
the end) and `[*]` / `.*` (every element or member). Written here instead of adding
jsonpath-ng: assertions need only this subset, and parsing it is one linear scan whose
work is bounded by MAX_PATH_CHARS and, when evaluated, by segments x document size
(filters, slices, recursive descent and scripts are deliberately absent).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_PATH_CHARS = 500
MAX_SEGMENTS = 50
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"-?[0-9]{1,9}")


class PathError(ValueError):
    """The path is not in the supported syntax; the message says where."""


@dataclass(frozen=True)
class Key:
    name: str


@dataclass(frozen=True)
class Index:
    number: int


@dataclass(frozen=True)
class Wildcard:
    pass


Segment = Key | Index | Wildcard


def parse_path(text: str) -> tuple[Segment, ...]:
    if not isinstance(text, str) or not text.startswith("$"):
        raise PathError("a JSON path starts with '$'")
    if len(text) > MAX_PATH_CHARS:
        raise PathError(f"a JSON path has at most {MAX_PATH_CHARS} characters")
    segments: list[Segment] = []
    at = 1
    while at < len(text):
        if len(segments) >= MAX_SEGMENTS:
            raise PathError(f"a JSON path has at most {MAX_SEGMENTS} steps")
        segment, at = _segment(text, at)
        segments.append(segment)
    return tuple(segments)


def _segment(text: str, at: int) -> tuple[Segment, int]:
    if text.startswith(".*", at):
        return Wildcard(), at + 2
    if text[at] == ".":
        match = _IDENT.match(text, at + 1)
        if match is None:
            raise PathError(f"expected a key name after '.' at character {at + 1}")
        return Key(match.group()), match.end()
    if text.startswith("[*]", at):
        return Wildcard(), at + 3
    if text[at] == "[" and at + 1 < len(text) and text[at + 1] in "'\"":
        return _quoted_key(text, at + 1)
    if text[at] == "[":
        match = _INDEX.match(text, at + 1)
        if match is None or not text.startswith("]", match.end()):
            raise PathError(f"expected [index], ['key'] or [*] at character {at}")
        return Index(int(match.group())), match.end() + 1
    raise PathError(f"unexpected {text[at]!r} at character {at}: use .key, ['key'], [n] or [*]")


def _quoted_key(text: str, at: int) -> tuple[Segment, int]:
    quote, chars, at = text[at], [], at + 1
    while at < len(text):
        char = text[at]
        if char == "\\" and at + 1 < len(text) and text[at + 1] in (quote, "\\"):
            chars.append(text[at + 1])
            at += 2
        elif char == quote:
            if not text.startswith("]", at + 1):
                raise PathError(f"expected ']' after the quoted key at character {at + 1}")
            return Key("".join(chars)), at + 2
        else:
            chars.append(char)
            at += 1
    raise PathError("a quoted key is not closed")


def has_wildcard(segments: Sequence[Segment]) -> bool:
    return any(isinstance(s, Wildcard) for s in segments)


def select(document: Any, segments: Sequence[Segment]) -> list[Any]:
    """Every value the path reaches, in document order; empty when it reaches none."""
    current = [document]
    for segment in segments:
        following: list[Any] = []
        for value in current:
            if isinstance(segment, Key):
                if isinstance(value, dict) and segment.name in value:
                    following.append(value[segment.name])
            elif isinstance(segment, Index):
                if isinstance(value, list) and -len(value) <= segment.number < len(value):
                    following.append(value[segment.number])
            elif isinstance(value, list):
                following.extend(value)
            elif isinstance(value, dict):
                following.extend(value.values())
        current = following
    return current


def render_path(segments: Sequence[Segment]) -> str:
    """The path in canonical syntax (tests use it to check parse/render round trips)."""
    parts = ["$"]
    for segment in segments:
        if isinstance(segment, Wildcard):
            parts.append("[*]")
        elif isinstance(segment, Index):
            parts.append(f"[{segment.number}]")
        elif _IDENT.fullmatch(segment.name):
            parts.append(f".{segment.name}")
        else:
            escaped = segment.name.replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"['{escaped}']")
    return "".join(parts)
