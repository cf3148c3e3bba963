"""The built-in offline provider: deterministic answers, no network, clearly labelled.

For demos and tests. The same request always gets the same answer. A JSON request with
a schema gets a value generated from the schema (so JSON prompts work offline); a JSON
request without one gets a small object; a text request gets a labelled echo.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .base import ChatRequest, ChatResult, estimate_tokens

LABEL = "offline (deterministic, no model called)"
MARK = "[offline provider: deterministic answer, no model was called]"


class OfflineProvider:
    label = LABEL

    def complete(self, request: ChatRequest) -> ChatResult:
        seed = hashlib.sha256(json.dumps(request.messages, sort_keys=True).encode()).hexdigest()[:8]
        if request.response_format == "json":
            value = (
                example_for(request.response_schema, seed, root=request.response_schema)
                if request.response_schema
                else {"answer": f"offline-{seed}", "offline": True}
            )
            text = json.dumps(value, ensure_ascii=False)
        else:
            last = next(
                (m["content"] for m in reversed(request.messages) if m["role"] == "user"), ""
            )
            excerpt = " ".join(last.split())[:240]
            text = f"{MARK} ({seed}) You said: {excerpt}"
        if request.max_tokens is not None and request.response_format != "json":
            text = text[: max(1, request.max_tokens * 4)]
        tokens_in = sum(estimate_tokens(m["content"]) for m in request.messages)
        raw = json.dumps(
            {
                "provider": "offline",
                "model": request.model,
                "choices": [{"message": {"role": "assistant", "content": text}}],
            }
        )
        return ChatResult(
            text=text,
            tokens_in=tokens_in,
            tokens_out=estimate_tokens(text),
            raw=raw,
            model=request.model,
        )


def example_for(schema: Any, seed: str, *, root: Any, name: str = "value", depth: int = 0) -> Any:
    """A deterministic value valid for the common JSON Schema keywords (type, enum,
    const, properties, required, items, min/max lengths and bounds, anyOf/oneOf/allOf,
    local $ref). Patterns and formats are not generated."""
    if not isinstance(schema, dict) or depth > 12:
        return f"offline {name}"
    if "$ref" in schema:
        return example_for(
            _resolve(root, schema["$ref"]), seed, root=root, name=name, depth=depth + 1
        )
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_for(schema[key][0], seed, root=root, name=name, depth=depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve(root, part["$ref"]) if "$ref" in part else part
            for k, v in part.items():
                if k in ("properties",) and k in merged:
                    merged[k] = {**merged[k], **v}
                elif k == "required" and k in merged:
                    merged[k] = [*merged[k], *v]
                else:
                    merged[k] = v
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return example_for({**merged, **rest}, seed, root=root, name=name, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {
            key: example_for(sub, seed, root=root, name=key, depth=depth + 1)
            for key, sub in props.items()
        }
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        items = schema.get("items", {})
        return [
            example_for(items, f"{seed}{i}", root=root, name=name, depth=depth + 1)
            for i in range(count)
        ]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        value: float = 0 if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
        if high is not None and value > high:
            value = high
        if high is not None and "exclusiveMaximum" in schema and value >= high:
            value = (low + high) / 2 if low is not None else high - 1
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = f"offline {name} {seed}"
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    if len(text) < low:
        text = text + "x" * (low - len(text))
    if high is not None:
        text = text[: int(high)]
    return text


def _resolve(root: Any, ref: str) -> Any:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node
