"""Prompt rendering on top of buildsite.templating (sandboxed Jinja2, StrictUndefined).

Pure: works on plain dicts, no database. Three rules:
- every variable a template uses must be declared (checked when a version is saved);
- every declared variable needs a value or a default when rendering, and values that
  were not declared are refused: both errors name the variable;
- values are checked against their declared type; strings are converted for the
  non-string types because pipeline `vars:` are rendered to strings by the engine.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jinja2 import meta

from buildsite import templating
from buildsite.errors import InvalidInput, Problem

ROLES = ("system", "user", "assistant")
TYPES = ("string", "number", "integer", "boolean", "array", "object", "any")
VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MISSING = object()


def normalize_variables(raw: Any) -> dict[str, dict[str, Any]]:
    """Declared variables as `{name: {"type": ..., "default"?: ..., "description"?: ...}}`.

    Accepts that form, the shorthand `{name: "type"}`, or a list of names (strings)."""
    if raw is None:
        return {}
    if isinstance(raw, list):
        raw = {name: {} for name in raw} if all(isinstance(n, str) for n in raw) else None
    if not isinstance(raw, dict):
        raise InvalidInput(
            [Problem("variables must be an object {name: {type, default}}", where="variables")]
        )
    problems: list[Problem] = []
    out: dict[str, dict[str, Any]] = {}
    for name, decl in raw.items():
        where = f"variables.{name}"
        if not VAR_NAME_RE.match(str(name)):
            problems.append(Problem("a variable name is a Python-style identifier", where=where))
            continue
        if isinstance(decl, str):
            decl = {"type": decl}
        if decl is None:
            decl = {}
        if not isinstance(decl, dict):
            problems.append(
                Problem("declare a variable as {type, default, description}", where=where)
            )
            continue
        unknown = sorted(set(decl) - {"type", "default", "description"})
        if unknown:
            problems.append(Problem(f"unknown key(s): {', '.join(unknown)}", where=where))
            continue
        kind = decl.get("type", "string")
        if kind not in TYPES:
            problems.append(Problem(f"type must be one of {', '.join(TYPES)}", where=where))
            continue
        clean: dict[str, Any] = {"type": kind}
        if "default" in decl:
            try:
                clean["default"] = coerce(name, kind, decl["default"])
            except InvalidInput as exc:
                problems.extend(exc.problems)
                continue
        if decl.get("description"):
            clean["description"] = str(decl["description"])
        out[str(name)] = clean
    if problems:
        raise InvalidInput(problems)
    return out


def coerce(name: str, kind: str, value: Any) -> Any:
    """`value` as the declared type, or InvalidInput naming the variable."""

    def refuse() -> InvalidInput:
        shown = json.dumps(value, default=str)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return InvalidInput([Problem(f"variable '{name}' must be {kind}, got {shown}", where=name)])

    if kind == "any":
        return value
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise refuse()
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise refuse()
    if kind in ("integer", "number"):
        if isinstance(value, str):
            try:
                value = json.loads(value.strip())
            except ValueError:
                raise refuse() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refuse()
        if kind == "integer":
            if isinstance(value, float) and not value.is_integer():
                raise refuse()
            return int(value)
        return value
    expected = list if kind == "array" else dict
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise refuse() from None
    if not isinstance(value, expected):
        raise refuse()
    return value


def sources_of(*, template: str | None, messages: list[dict] | None) -> list[tuple[str, str]]:
    """(where, source) of every template text in a version."""
    if messages:
        return [(f"messages[{i}].content", m["content"]) for i, m in enumerate(messages)]
    return [("template", template or "")]


def check_templates(
    *, template: str | None, messages: list[dict] | None, variables: dict[str, dict]
) -> None:
    """Save-time check: syntax errors with their line, and undeclared variables by name."""
    problems: list[Problem] = []
    for where, source in sources_of(template=template, messages=messages):
        try:
            templating.check_syntax(source, where=where)
        except templating.TemplateError as exc:
            problems.extend(exc.problems)
            continue
        used = meta.find_undeclared_variables(templating.parse(source))
        for name in sorted(used - set(variables)):
            problems.append(
                Problem(
                    f"variable '{name}' is used but not declared in 'variables'",
                    _first_line_using(source, name),
                    where,
                )
            )
    if problems:
        raise InvalidInput(problems)


def _first_line_using(source: str, name: str) -> int | None:
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    for number, line in enumerate(source.splitlines(), start=1):
        if pattern.search(line) and ("{{" in line or "{%" in line):
            return number
    return None


def resolve_variables(declared: dict[str, dict], given: dict[str, Any] | None) -> dict[str, Any]:
    """Values for rendering: given ones (type-checked) plus defaults. A declared variable
    without value or default, or a given variable that is not declared, is an error."""
    if given is not None and not isinstance(given, dict):
        raise InvalidInput([Problem("variables must be an object", where="variables")])
    given = dict(given or {})
    problems: list[Problem] = []
    for name in sorted(set(given) - set(declared)):
        problems.append(Problem(f"variable '{name}' is not declared by this version", where=name))
    values: dict[str, Any] = {}
    for name, decl in declared.items():
        value = given.get(name, decl.get("default", _MISSING))
        if value is _MISSING:
            problems.append(Problem(f"missing variable '{name}'", where=name))
            continue
        try:
            values[name] = coerce(name, decl["type"], value)
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    return values


def render_messages(
    *,
    template: str | None,
    messages: list[dict] | None,
    declared: dict[str, dict],
    given: dict[str, Any] | None,
) -> list[dict[str, str]]:
    """The chat messages a version produces; a text template is one user message."""
    values = resolve_variables(declared, given)
    if messages:
        return [
            {
                "role": m["role"],
                "content": templating.render(m["content"], values, where=f"messages[{i}].content"),
            }
            for i, m in enumerate(messages)
        ]
    return [
        {"role": "user", "content": templating.render(template or "", values, where="template")}
    ]
