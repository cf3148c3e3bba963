"""The one template engine of Buildsite: Jinja2's sandbox with StrictUndefined.

Pipeline interpolation and prompt templates both use it, so users learn one syntax and
a missing variable is always an error that names it, never an empty string.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.nodes import Template as TemplateNode
from jinja2.sandbox import SandboxedEnvironment

from .errors import InvalidInput, Problem

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class TemplateError(InvalidInput):
    pass


def has_markup(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    return _env.from_string(source)


def check_syntax(source: str, *, where: str | None = None, line_offset: int = 0) -> None:
    """Raise TemplateError with the line of a syntax error; nothing is rendered."""
    try:
        _env.parse(source)
    except TemplateSyntaxError as exc:
        line = (exc.lineno or 1) + line_offset
        raise TemplateError(
            [Problem(f"template syntax error: {exc.message}", line, where)]
        ) from exc


def parse(source: str) -> TemplateNode:
    return _env.parse(source)


def render(source: str, context: dict[str, Any], *, where: str | None = None) -> str:
    """Render `source`; a plain string without markup is returned as it is."""
    if not has_markup(source):
        return source
    try:
        return str(_compile(source).render(**context))
    except TemplateSyntaxError as exc:
        raise TemplateError(
            [Problem(f"template syntax error: {exc.message}", exc.lineno, where)]
        ) from exc
    except UndefinedError as exc:
        raise TemplateError([Problem(f"undefined variable: {exc.message}", None, where)]) from exc
    except SecurityError as exc:
        raise TemplateError([Problem(f"not allowed in templates: {exc}", None, where)]) from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError([Problem(f"template error: {exc}", None, where)]) from exc


def render_value(value: Any, context: dict[str, Any], *, where: str | None = None) -> Any:
    """Render every string inside a JSON-like value (dicts, lists, scalars)."""
    if isinstance(value, str):
        return render(value, context, where=where)
    if isinstance(value, dict):
        return {
            k: render_value(v, context, where=f"{where}.{k}" if where else k)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [render_value(v, context, where=where) for v in value]
    return value
