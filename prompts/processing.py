"""Turning a model's answer into output: extract, parse, validate; and the repair prompt.

Pure: text in, result out. Models wrap JSON in code fences and prose, so extraction
looks inside the first fenced block, then for the first JSON value that parses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema.validators import validator_for

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)(?:\r?\n)?```", re.S)
# Scanning stops after this many candidate starts, so a hostile answer full of
# braces cannot make extraction quadratic.
MAX_CANDIDATES = 200
MAX_ERRORS_SHOWN = 5


class ExtractionError(ValueError):
    pass


@dataclass(frozen=True)
class Processed:
    ok: bool
    output: str  # the answer text after extraction (what a text prompt returns)
    parsed: Any  # the JSON value for a JSON prompt, the text for a text prompt
    error: str = ""


def strip_code_fences(text: str) -> str:
    """The content of the first fenced block (a `json` one if there is one), or the text."""
    blocks = _FENCE_RE.findall(text)
    if not blocks:
        return text.strip()
    for lang, body in blocks:
        if lang.lower() == "json":
            return body.strip()
    return blocks[0][1].strip()


def find_json(text: str) -> Any:
    """The first JSON object or array in `text` (after stripping fences)."""
    body = strip_code_fences(text)
    try:
        value = json.loads(body)
        if isinstance(value, (dict, list)):
            return value
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    tried = 0
    for match in re.finditer(r"[\[{]", body):
        tried += 1
        if tried > MAX_CANDIDATES:
            break
        try:
            value, _ = decoder.raw_decode(body, match.start())
        except ValueError:
            continue
        return value
    raise ExtractionError("no JSON object found in the response")


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """Readable validation errors, `$.path: message`, in a stable order."""
    validator = validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{e.json_path}: {e.message}" for e in errors]


def process(text: str, *, response_format: str, schema: dict[str, Any] | None) -> Processed:
    if response_format != "json":
        answer = text.strip()
        if not answer:
            return Processed(False, "", None, "the response is empty")
        return Processed(True, answer, answer)
    try:
        value = find_json(text)
    except ExtractionError as exc:
        return Processed(False, text.strip(), None, str(exc))
    output = json.dumps(value, ensure_ascii=False)
    if schema:
        errors = schema_errors(value, schema)
        if errors:
            shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
            more = len(errors) - MAX_ERRORS_SHOWN
            if more > 0:
                shown += f"; and {more} more"
            return Processed(False, output, value, f"does not match the schema: {shown}")
    return Processed(True, output, value)


def repair_message(error: str, schema: dict[str, Any] | None) -> dict[str, str]:
    """The user message that asks the model to fix its previous answer."""
    text = (
        f"Your previous answer could not be used: {error}.\n"
        "Reply again with only the JSON value, no prose and no code fences."
    )
    if schema:
        text += "\nIt must match this JSON Schema:\n" + json.dumps(schema, indent=2, sort_keys=True)
    return {"role": "user", "content": text}
