"""Content validation, run on every save (pure: the caller passes what it knows).

Errors refuse the save and are all reported at once, each with its line in the body the
editor shows (front-matter included). Warnings are stored with the revision.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from jsonschema import SchemaError
from jsonschema.validators import validator_for

from buildsite.errors import InvalidInput, Problem

from .markdown import Outline, outline, split_front_matter
from .paths import UNSAFE_SCHEMES, resolve_link, scheme_of

MAX_TITLE = 200
MAX_TAGS = 20
TAG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
FRONT_MATTER_NODE_BUDGET = 10_000


@dataclass(frozen=True)
class Site:
    """What validation knows about the other documents of the project."""

    anchors: dict[str, frozenset[str]] = field(default_factory=dict)  # path -> its anchors
    redirects: dict[str, str] = field(default_factory=dict)  # old path -> current path

    def has(self, path: str) -> bool:
        return path in self.anchors


@dataclass
class Result:
    title: str
    tags: list[str]
    front_matter: dict[str, Any]
    anchors: list[str]
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def raise_errors(self) -> None:
        if self.errors:
            raise InvalidInput(self.errors)


def _error(message: str, line: int | None = None, where: str | None = None) -> Problem:
    return Problem(message, line, where, level="error")


def _warning(message: str, line: int | None = None, where: str | None = None) -> Problem:
    return Problem(message, line, where, level="warning")


class _TooComplex(Exception):
    pass


def json_safe(value: Any, budget: list[int] | None = None) -> Any:
    """YAML values as JSON values (dates to ISO strings), refusing alias bombs."""
    budget = budget if budget is not None else [FRONT_MATTER_NODE_BUDGET]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooComplex()
    if isinstance(value, dict):
        return {str(k): json_safe(v, budget) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v, budget) for v in value]
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _key_line(front_matter: str, first_line: int, key: Any) -> int:
    pattern = re.compile(rf"^\s*['\"]?{re.escape(str(key))}['\"]?\s*:")
    for index, text in enumerate(front_matter.split("\n")):
        if pattern.match(text):
            return first_line + index
    return first_line


def check_schema(schema: Any) -> None:
    """Refuse a front-matter schema that is not a valid JSON schema."""
    if not isinstance(schema, dict):
        raise InvalidInput([_error("The front-matter schema must be a JSON object.")])
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput([_error(f"Invalid JSON schema: {exc.message}")]) from exc


def _front_matter(split, schema, errors: list[Problem]) -> dict[str, Any]:
    if split.unclosed:
        errors.append(_error("front-matter opened with '---' is never closed", 1))
        return {}
    if split.front_matter is None:
        return {}
    try:
        raw = yaml.safe_load(split.front_matter)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = split.front_matter_line + (mark.line if mark else 0)
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        errors.append(_error(f"front-matter is not valid YAML: {problem}", line))
        return {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(_error("front-matter must be a mapping of keys to values", 2))
        return {}
    try:
        data = json_safe(raw)
    except _TooComplex:
        errors.append(_error("front-matter is too large or too deeply nested", 2))
        return {}
    if schema:
        validator = validator_for(schema)(schema)
        for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
            where = ".".join(str(p) for p in err.absolute_path) or "(front-matter)"
            line = (
                _key_line(split.front_matter, split.front_matter_line, err.absolute_path[0])
                if err.absolute_path
                else split.front_matter_line
            )
            errors.append(_error(f"front-matter {where}: {err.message}", line, "front-matter"))
    return data


def _headings(doc: Outline, errors: list[Problem], warnings: list[Problem]) -> None:
    previous = 0
    for heading in doc.headings:
        if not heading.text:
            errors.append(_error("empty heading: give it some text or remove it", heading.line))
        if previous and heading.level > previous + 1:
            warnings.append(
                _warning(f"heading level jumps from h{previous} to h{heading.level}", heading.line)
            )
        previous = heading.level


def link_problems(
    *, path: str, doc: Outline, own_anchors: set[str], site: Site
) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) for the links of one document."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for link in doc.links:
        scheme = scheme_of(link.href)
        if scheme in UNSAFE_SCHEMES and not (link.is_image and scheme == "data"):
            warnings.append(
                _warning(f"unsafe {scheme}: link is removed when the page is rendered", link.line)
            )
            continue
        if link.is_image:
            if not link.text.strip():
                warnings.append(_warning("image without alt text", link.line))
            continue
        target = resolve_link(path, link.href)
        if target is None:
            continue
        if target.problem:
            errors.append(_error(f"broken link '{link.href}': {target.problem}", link.line))
            continue
        if target.path is None or target.path == path:
            anchors: set[str] | frozenset[str] = own_anchors
            shown = "this document"
        elif site.has(target.path):
            anchors = site.anchors[target.path]
            shown = target.path
        elif target.path in site.redirects:
            new_path = site.redirects[target.path]
            warnings.append(
                _warning(f"link '{link.href}' uses an old path: it moved to {new_path}", link.line)
            )
            anchors = site.anchors.get(new_path, frozenset())
            shown = new_path
        else:
            errors.append(
                _error(f"broken link '{link.href}': no document '{target.path}'", link.line)
            )
            continue
        if target.anchor and target.anchor not in anchors:
            errors.append(
                _error(
                    f"broken link '{link.href}': no heading '#{target.anchor}' in {shown}",
                    link.line,
                )
            )
    return errors, warnings


def validate_document(
    *,
    path: str,
    title: str | None,
    body: str,
    tags: list[str] | None,
    site: Site,
    schema: dict | None = None,
    max_body_bytes: int = 512 * 1024,
) -> Result:
    errors: list[Problem] = []
    warnings: list[Problem] = []
    size = len(body.encode("utf-8"))
    if size > max_body_bytes:
        errors.append(_error(f"the body is {size} bytes; the limit is {max_body_bytes}"))
    if "\x00" in body:
        line = body[: body.index("\x00")].count("\n") + 1
        errors.append(_error("the body contains a NUL character", line))
    split = split_front_matter(body)
    front_matter = _front_matter(split, schema, errors)
    fm_title = front_matter.get("title")
    resolved_title = (title or "").strip() or (str(fm_title).strip() if fm_title else "")
    if not resolved_title:
        errors.append(_error("a title is required", None, "title"))
    elif len(resolved_title) > MAX_TITLE:
        errors.append(_error(f"the title is longer than {MAX_TITLE} characters", None, "title"))
    resolved_tags = _tags(tags, front_matter, errors)
    doc = outline(split.content, split.content_offset) if size <= max_body_bytes else Outline()
    _headings(doc, errors, warnings)
    own_anchors = {h.anchor for h in doc.headings}
    link_errors, link_warnings = link_problems(
        path=path, doc=doc, own_anchors=own_anchors, site=site
    )
    errors.extend(link_errors)
    warnings.extend(link_warnings)
    return Result(
        title=resolved_title,
        tags=resolved_tags,
        front_matter=front_matter,
        anchors=[h.anchor for h in doc.headings],
        errors=sorted(errors, key=lambda p: p.line or 0),
        warnings=sorted(warnings, key=lambda p: p.line or 0),
    )


def _tags(tags: list[str] | None, front_matter: dict, errors: list[Problem]) -> list[str]:
    if tags is None:
        raw = front_matter.get("tags", [])
        tags = raw if isinstance(raw, list) else [raw]
    cleaned: list[str] = []
    for tag in tags:
        tag = str(tag).strip().lower()
        if not TAG.match(tag):
            errors.append(
                _error(
                    f"tag '{tag}' must be 1-40 lower-case letters, digits, '.', '-' or '_'",
                    where="tags",
                )
            )
        elif tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        errors.append(_error(f"at most {MAX_TAGS} tags", where="tags"))
    return cleaned
