"""What a prompt version holds, validated at the edge; and the diff between two versions.

Pure: a version body (API, UI, admin) becomes a clean dict or an InvalidInput listing
every problem, syntax errors with their line. Nothing here touches the database.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for

from buildsite.errors import InvalidInput, Problem

from .refs import NAME_RE
from .rendering import ROLES, check_templates, normalize_variables

FORMATS = ("text", "json")
MAX_TEMPLATE_CHARS = 100_000
MAX_REPAIRS = 5
DEFAULT_PROVIDER = "offline"
# The fields that make up a version, in the order a diff shows them.
FIELDS = (
    "template",
    "messages",
    "variables",
    "provider",
    "model",
    "temperature",
    "max_tokens",
    "response_format",
    "response_schema",
    "max_repairs",
)


def clean_version(body: dict[str, Any]) -> dict[str, Any]:
    """A version's fields from an input body, or InvalidInput with every problem found."""
    problems: list[Problem] = []
    template = body.get("template")
    messages = body.get("messages")
    if (template is None) == (messages is None) or (template == "" and not messages):
        problems.append(
            Problem(
                "give either 'template' (text) or 'messages' (chat), not both", where="template"
            )
        )
    if template is not None and not isinstance(template, str):
        problems.append(Problem("template must be a string", where="template"))
        template = None
    if template is not None and len(template) > MAX_TEMPLATE_CHARS:
        problems.append(
            Problem(f"template is over {MAX_TEMPLATE_CHARS} characters", where="template")
        )
    clean_messages = _clean_messages(messages, problems) if messages is not None else None

    try:
        variables = normalize_variables(body.get("variables"))
    except InvalidInput as exc:
        problems.extend(exc.problems)
        variables = {}

    provider = body.get("provider") or DEFAULT_PROVIDER
    if not isinstance(provider, str) or not NAME_RE.match(provider):
        problems.append(
            Problem("provider must be the name of a configured provider", where="provider")
        )
    model = body.get("model") or ""
    if not isinstance(model, str) or len(model) > 200:
        problems.append(Problem("model must be a string (at most 200 characters)", where="model"))
    temperature = body.get("temperature")
    temperature = 0.0 if temperature is None else temperature
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (0 <= temperature <= 2)
    ):
        problems.append(Problem("temperature must be a number from 0 to 2", where="temperature"))
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 1 <= max_tokens <= 1_000_000
    ):
        problems.append(Problem("max_tokens must be a positive integer", where="max_tokens"))
    max_repairs = body.get("max_repairs")
    max_repairs = 2 if max_repairs is None else max_repairs
    if (
        isinstance(max_repairs, bool)
        or not isinstance(max_repairs, int)
        or not (0 <= max_repairs <= MAX_REPAIRS)
    ):
        problems.append(Problem(f"max_repairs must be 0 to {MAX_REPAIRS}", where="max_repairs"))

    response_format = body.get("response_format") or "text"
    schema = body.get("response_schema")
    if response_format not in FORMATS:
        problems.append(
            Problem("response_format must be 'text' or 'json'", where="response_format")
        )
    if schema is not None:
        if response_format != "json":
            problems.append(
                Problem("a response_schema needs response_format 'json'", where="response_schema")
            )
        elif not isinstance(schema, dict):
            problems.append(
                Problem("response_schema must be a JSON Schema object", where="response_schema")
            )
        else:
            try:
                validator_for(schema).check_schema(schema)
            except SchemaError as exc:
                problems.append(
                    Problem(f"invalid JSON Schema: {exc.message}", where="response_schema")
                )

    if not problems:
        try:
            check_templates(template=template, messages=clean_messages, variables=variables)
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    return {
        "template": template if clean_messages is None else "",
        "messages": clean_messages or [],
        "variables": variables,
        "provider": provider,
        "model": model,
        "temperature": float(temperature),
        "max_tokens": max_tokens,
        "response_format": response_format,
        "response_schema": schema,
        "max_repairs": max_repairs,
    }


def _clean_messages(messages: Any, problems: list[Problem]) -> list[dict[str, str]] | None:
    if not isinstance(messages, list) or not messages:
        problems.append(
            Problem("messages must be a non-empty list of {role, content}", where="messages")
        )
        return None
    clean = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            problems.append(Problem("a message is {role, content}", where=where))
            continue
        if message.get("role") not in ROLES:
            problems.append(
                Problem(f"role must be one of {', '.join(ROLES)}", where=f"{where}.role")
            )
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            problems.append(Problem("content must be a non-empty string", where=f"{where}.content"))
            continue
        if len(content) > MAX_TEMPLATE_CHARS:
            problems.append(
                Problem(f"over {MAX_TEMPLATE_CHARS} characters", where=f"{where}.content")
            )
        clean.append({"role": message["role"], "content": content})
    return clean


def as_text(version: dict[str, Any]) -> str:
    """A version as reviewable text: the prompt first, then its settings."""
    lines: list[str] = []
    if version.get("messages"):
        for message in version["messages"]:
            lines.append(f"--- {message['role']} ---")
            lines.extend(message["content"].splitlines())
    else:
        lines.append("--- template ---")
        lines.extend((version.get("template") or "").splitlines())
    lines.append("--- settings ---")
    for field in FIELDS[2:]:
        value = version.get(field)
        shown = (
            json.dumps(value, sort_keys=True, indent=2)
            if isinstance(value, dict)
            else json.dumps(value)
        )
        lines.extend(f"{field}: {shown}".splitlines())
    return "\n".join(lines) + "\n"


def diff(
    old: dict[str, Any], new: dict[str, Any], *, old_name: str, new_name: str
) -> dict[str, Any]:
    """The fields that changed and a unified diff of the two versions as text."""
    changed = [
        {"field": f, "from": old.get(f), "to": new.get(f)}
        for f in FIELDS
        if old.get(f) != new.get(f)
    ]
    unified = "".join(
        difflib.unified_diff(
            as_text(old).splitlines(keepends=True),
            as_text(new).splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
        )
    )
    return {"changes": changed, "unified": unified}
