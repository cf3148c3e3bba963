"""Turning the editor's and playground's form fields into service inputs.

JSON fields (messages, variables, schema) arrive as text; a parse error becomes a
Problem naming the field and line, like every other input error.
"""

from __future__ import annotations

import json
from typing import Any

from buildsite.errors import InvalidInput, Problem


def _json_field(data, name: str, problems: list[Problem], default: Any = None) -> Any:
    text = (data.get(name) or "").strip()
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(Problem(f"not valid JSON: {exc.msg}", exc.lineno, name))
        return default


def _number(data, name: str, problems: list[Problem], kind=float) -> Any:
    text = (data.get(name) or "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        problems.append(Problem("not a number", where=name))
        return None


def version_body(data) -> dict[str, Any]:
    """A version body (as the API takes it) from the editor form."""
    problems: list[Problem] = []
    body: dict[str, Any] = {}
    if data.get("mode") == "messages":
        body["messages"] = _json_field(data, "messages", problems, default=[])
    else:
        body["template"] = data.get("template", "").replace("\r\n", "\n")
    body["variables"] = _json_field(data, "variables", problems, default={})
    body["response_format"] = data.get("response_format") or "text"
    if body["response_format"] == "json":
        body["response_schema"] = _json_field(data, "response_schema", problems)
    body["provider"] = data.get("provider") or "offline"
    body["model"] = (data.get("model") or "").strip()
    body["temperature"] = _number(data, "temperature", problems)
    body["max_tokens"] = _number(data, "max_tokens", problems, int)
    body["max_repairs"] = _number(data, "max_repairs", problems, int)
    if problems:
        raise InvalidInput(problems)
    return body


def label_move(data) -> dict[str, Any]:
    """The label form's fields as services.set_label takes them. `force` is a checkbox
    (only maintainers are offered it); the service asks a reason of a forced move."""
    try:
        number = int((data.get("version") or "").strip())
    except ValueError:
        raise InvalidInput([Problem("choose a version", where="version")]) from None
    return {
        "label": (data.get("label") or "").strip(),
        "number": number,
        "force": data.get("force") in ("on", "true", "1"),
        "reason": (data.get("reason") or "").strip(),
    }


def variables_from(data, declared: dict[str, dict]) -> dict[str, Any]:
    """Playground values: one field per declared variable, `var:NAME`. An empty field
    leaves the variable out (so its default applies, or the error names it)."""
    values: dict[str, Any] = {}
    for name in declared:
        raw = data.get(f"var:{name}")
        if raw is None or raw == "":
            continue
        values[name] = raw.replace("\r\n", "\n")
    return values


def form_values(version) -> dict[str, str]:
    """The editor's fields pre-filled from a version."""
    if version is None:
        return {
            "mode": "template",
            "template": "",
            "variables": "{}",
            "response_format": "text",
            "provider": "offline",
            "temperature": "0",
            "max_repairs": "2",
        }
    return {
        "mode": "messages" if version.messages else "template",
        "template": version.template,
        "messages": json.dumps(version.messages, indent=2) if version.messages else "",
        "variables": json.dumps(version.variables, indent=2),
        "response_format": version.response_format,
        "response_schema": json.dumps(version.response_schema, indent=2)
        if version.response_schema
        else "",
        "provider": version.provider,
        "model": version.model,
        "temperature": f"{version.temperature:g}",
        "max_tokens": "" if version.max_tokens is None else str(version.max_tokens),
        "max_repairs": str(version.max_repairs),
    }
