"""The one template engine of Buildsite: Jinja2's sandbox with StrictUndefined.

Pipeline interpolation and prompt templates both use it, so users learn one syntax and
a missing variable is always an error that names it, never an empty string.
"""

from __future__ import annotations

import contextvars
import re
import shlex
import time
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.nodes import Template as TemplateNode
from jinja2.sandbox import SandboxedEnvironment, safe_range

from .errors import InvalidInput, Problem

MAX_SIZE = 1_000_000  # characters (or items, or digits) any one value may grow to
MAX_EXPONENT = 10_000
MAX_LOOP_ITEMS = 1_000_000  # `range` items one render may loop over, nested loops included
MAX_RENDER_SECONDS = 2.0
_WIDE_FORMAT = re.compile(r"%[-+ #0]*(\*|\d{4,})|\{[^}]*:[^}]*\d{4,}")


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, plus bounds on operations whose result can grow without limit:
    `10 ** 100000000` or `'x' * 10**9` would hold the process for minutes or fill its
    memory. Intercepting an operator also stops Jinja from folding it at compile time,
    which happened while saving a template, before any render."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if (
            operator == "**"
            and _number(left)
            and _number(right)
            and (abs(right) > MAX_EXPONENT or _digits(left) * abs(right) > MAX_SIZE)
        ):
            raise SecurityError(f"the result of {operator} would be too large")
        if operator == "*":
            if _number(left) and _number(right):
                if _digits(left) + _digits(right) > MAX_SIZE:
                    raise SecurityError("the result of * would be too large")
            else:
                size, times = (len(left), right) if isinstance(right, int) else (_len(right), left)
                if isinstance(times, int) and size * times > MAX_SIZE:
                    raise SecurityError(
                        f"repeating a value of {size} {times} times is over {MAX_SIZE}"
                    )
        if operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise SecurityError("format widths of 1000 or more would be too large")
        return super().call_binop(context, operator, left, right)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _digits(value: Any) -> int:
    return max(1, int(abs(value)).bit_length() * 3 // 10 + 1)


def _len(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


_env = _BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_env.filters["quote"] = lambda value: shlex.quote(str(value))  # for shell steps
_env.filters["center"] = lambda value, width=80: str(value).center(min(int(width), MAX_SIZE))


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
        text = _bounded_render(_compile(source), context)
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
    except RecursionError as exc:
        raise TemplateError([Problem("template nests too deeply", None, where)]) from exc
    if len(text) > MAX_SIZE:
        raise TemplateError(
            [Problem(f"the rendered text is over {MAX_SIZE} characters", None, where)]
        )
    return text


class _Budget:
    """What one render may still spend: loop items (every `range` draws on it) and
    time (checked at each piece of output and each range)."""

    def __init__(self) -> None:
        self.items = MAX_LOOP_ITEMS
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _budgeted_range(*args: int) -> range:
    """`range` as the sandbox has it, drawing its length from the render's budget, so
    nested loops cannot multiply their way to billions of iterations."""
    numbers = safe_range(*args)  # at most MAX_RANGE items each, as in the sandbox
    budget = _budget.get()
    if budget is not None:
        budget.check_time()
        budget.items -= len(numbers)
        if budget.items < 0:
            raise SecurityError(f"loops over more than {MAX_LOOP_ITEMS} items in all")
    return numbers


_env.globals["range"] = _budgeted_range


def _bounded_render(template: Any, context: dict[str, Any]) -> str:
    """Render piece by piece, within the size and time bounds."""
    budget = _Budget()
    token = _budget.set(budget)
    try:
        parts: list[str] = []
        size = 0
        for piece in template.generate(**context):
            size += len(piece)
            if size > MAX_SIZE:
                raise SecurityError(f"the rendered text is over {MAX_SIZE} characters")
            budget.check_time()
            parts.append(piece)
        return "".join(parts)
    finally:
        _budget.reset(token)


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
