"""The assertion engine: what a dataset item expects of an answer, checked at save
(`check_expectations`) and applied to one answer (`evaluate`). Pure: no database.

Regexes (the `regex` assertion and a JSON Schema's `pattern`) run with the `regex`
module and a time limit, because a pattern's catastrophic backtracking on a model's
answer would otherwise hold a worker for minutes; the output they see and the pattern
are also capped in length. `graded_by` calls the injected `grade` function, which runs
the judge prompt; this module never calls a model itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import regex
from jsonschema import Draft202012Validator, SchemaError, ValidationError, validators

from buildsite.errors import InvalidInput, Problem
from prompts.refs import parse_ref

from .jsonpath import PathError, has_wildcard, parse_path, select

MAX_ASSERTIONS = 50
MAX_PATTERN_CHARS = 1000
MAX_WEIGHT = 1000.0
REGEX_OUTPUT_CHARS = 100_000
JSON_OUTPUT_CHARS = 1_000_000
REGEX_TIMEOUT_SECONDS = 0.5
EXCERPT_CHARS = 120
DEFAULT_MIN_SCORE = 0.5

Grade = Callable[[str, str, Mapping[str, Any]], float]

# type -> (required keys, optional keys); every assertion may also carry `weight`.
KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "equals": (frozenset({"value"}), frozenset({"trim"})),
    "contains": (frozenset({"value"}), frozenset({"ignore_case"})),
    "not_contains": (frozenset({"value"}), frozenset({"ignore_case"})),
    "regex": (frozenset({"pattern"}), frozenset()),
    "is_json": (frozenset(), frozenset()),
    "json_schema": (frozenset({"schema"}), frozenset()),
    "json_path": (frozenset({"path", "equals"}), frozenset()),
    "max_latency_ms": (frozenset({"value"}), frozenset()),
    "max_cost_usd": (frozenset({"value"}), frozenset()),
    "graded_by": (frozenset({"prompt"}), frozenset({"min_score"})),
}
TEXT_VALUE = {"equals", "contains", "not_contains"}
FLAGS = {"trim", "ignore_case"}


class GradeError(Exception):
    """Raised by a `grade` function whose judge gave no usable score; the message
    becomes the assertion's failure."""


@dataclass(frozen=True)
class Result:
    passed: bool
    score: float
    failures: list[str] = field(default_factory=list)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_expectations(expect: Any, *, where: str = "expect") -> list[Problem]:
    """Every problem of an `expect` list, each named by its place (`expect.3.path`)."""
    if not isinstance(expect, list):
        return [Problem("expect is a list of assertions", where=where)]
    if len(expect) > MAX_ASSERTIONS:
        return [Problem(f"at most {MAX_ASSERTIONS} assertions per item", where=where)]
    problems: list[Problem] = []
    for index, assertion in enumerate(expect):
        problems.extend(_check_one(assertion, f"{where}.{index}"))
    return problems


def _check_one(assertion: Any, at: str) -> Iterator[Problem]:
    if not isinstance(assertion, dict):
        yield Problem('an assertion is an object such as {"type": "contains", ...}', where=at)
        return
    kind = assertion.get("type")
    if kind not in KEYS:
        known = ", ".join(KEYS)
        yield Problem(
            f"unknown assertion type {str(kind)[:50]!r}; known: {known}", where=f"{at}.type"
        )
        return
    required, optional = KEYS[kind]
    for key in sorted(required - assertion.keys()):
        yield Problem(f"{kind} needs '{key}'", where=f"{at}.{key}")
    for key in sorted(assertion.keys() - required - optional - {"type", "weight"}):
        yield Problem(f"{kind} takes no '{str(key)[:50]}'", where=f"{at}.{key}")
    if "weight" in assertion:
        weight = assertion["weight"]
        if not _number(weight) or not 0 < weight <= MAX_WEIGHT:
            yield Problem(
                f"weight is a number above 0, at most {MAX_WEIGHT:g}", where=f"{at}.weight"
            )
    for flag in FLAGS & assertion.keys():
        if not isinstance(assertion[flag], bool):
            yield Problem(f"{flag} is true or false", where=f"{at}.{flag}")
    yield from _check_values(kind, assertion, at)


def _check_values(kind: str, a: dict[str, Any], at: str) -> Iterator[Problem]:
    if kind in TEXT_VALUE and "value" in a and not isinstance(a["value"], str):
        yield Problem(f"{kind} compares text: 'value' is a string", where=f"{at}.value")
    elif kind == "regex" and "pattern" in a:
        if message := _pattern_problem(a["pattern"]):
            yield Problem(message, where=f"{at}.pattern")
    elif kind == "json_schema" and "schema" in a:
        schema = a["schema"]
        try:
            if not isinstance(schema, dict):
                raise SchemaError("a JSON Schema is an object")
            validators.validator_for(schema, default=Draft202012Validator).check_schema(schema)
        except SchemaError as exc:
            yield Problem(f"not a valid JSON Schema: {exc.message[:200]}", where=f"{at}.schema")
    elif kind == "json_path" and "path" in a:
        try:
            parse_path(a["path"])
        except PathError as exc:
            yield Problem(str(exc), where=f"{at}.path")
    elif kind in ("max_latency_ms", "max_cost_usd") and "value" in a:
        value = a["value"]
        if not _number(value) or value < 0 or (kind == "max_latency_ms" and value != int(value)):
            what = "whole number of milliseconds" if kind == "max_latency_ms" else "number of USD"
            yield Problem(f"{kind} is a {what}, 0 or more", where=f"{at}.value")
    elif kind == "graded_by":
        yield from _check_graded_by(a, at)


def _check_graded_by(a: dict[str, Any], at: str) -> Iterator[Problem]:
    if "prompt" in a:
        if not isinstance(a["prompt"], str):
            yield Problem("prompt names a prompt of the project", where=f"{at}.prompt")
        else:
            try:
                parse_ref(a["prompt"], where=f"{at}.prompt")
            except InvalidInput as exc:
                yield from exc.problems
    if "min_score" in a and not (_number(a["min_score"]) and 0 <= a["min_score"] <= 1):
        yield Problem("min_score is a number from 0 to 1", where=f"{at}.min_score")


def _pattern_problem(pattern: Any) -> str | None:
    if not isinstance(pattern, str):
        return "a regex pattern is a string"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"a regex pattern has at most {MAX_PATTERN_CHARS} characters"
    try:
        regex.compile(pattern)
    except regex.error as exc:
        return f"not a valid regex: {exc}"
    return None


def graded_prompts(expect: list[Any]) -> set[str]:
    """The prompt names `graded_by` assertions refer to (the service checks they exist)."""
    return {
        parse_ref(a["prompt"]).name
        for a in expect
        if isinstance(a, dict) and a.get("type") == "graded_by" and isinstance(a.get("prompt"), str)
    }


def evaluate(
    expect: list[Any],
    *,
    output: str,
    variables: Mapping[str, Any] | None = None,
    latency_ms: int | None = None,
    cost_usd: float | None = None,
    grade: Grade | None = None,
) -> Result:
    """Applies every assertion to one answer. The score is the weighted mean of the
    assertions' scores (1 or 0, or the judge's score for `graded_by`); the answer passes
    when every assertion passes. An empty list passes with score 1."""
    if problems := check_expectations(expect):
        raise InvalidInput(problems)
    answer = _Answer(output, dict(variables or {}), latency_ms, cost_usd, grade)
    total_weight = weighted = 0.0
    failures: list[str] = []
    for index, assertion in enumerate(expect):
        score, failure = _apply(assertion, answer)
        weight = float(assertion.get("weight", 1.0))
        total_weight += weight
        weighted += weight * score
        if failure is not None:
            failures.append(f"expect.{index} ({assertion['type']}): {failure}")
    # Rounding may carry a weighted mean of scores in [0, 1] one ulp outside it.
    score = min(1.0, max(0.0, weighted / total_weight)) if total_weight else 1.0
    return Result(passed=not failures, score=score, failures=failures)


@dataclass
class _Answer:
    output: str
    variables: dict[str, Any]
    latency_ms: int | None
    cost_usd: float | None
    grade: Grade | None
    _parsed: tuple[Any, str | None] | None = None

    def parsed(self) -> tuple[Any, str | None]:
        """The output as JSON (whitespace around it allowed), or why it is not; parsed once."""
        if self._parsed is None:
            self._parsed = _parse_json(self.output)
        return self._parsed


def _parse_json(text: str) -> tuple[Any, str | None]:
    if len(text) > JSON_OUTPUT_CHARS:
        return None, f"the output is over {JSON_OUTPUT_CHARS} characters, too long to parse"

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse), None
    except (ValueError, RecursionError) as exc:
        return None, f"not JSON ({str(exc)[:100]}): {excerpt(text)}"


def excerpt(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):  # a grade function may return anything
            text = repr(value)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ==, true is not 1 (numbers compare by value)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) and _number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _apply(a: dict[str, Any], answer: _Answer) -> tuple[float, str | None]:
    """(score, failure or None) of one assertion."""
    kind, output = a["type"], answer.output
    if kind == "equals":
        got = output.strip() if a.get("trim") else output
        ok = got == a["value"]
        return _verdict(ok, f"expected {excerpt(a['value'])}, got {excerpt(got)}")
    if kind in ("contains", "not_contains"):
        needle, hay = a["value"], output
        if a.get("ignore_case"):
            needle, hay = needle.casefold(), hay.casefold()
        found = needle in hay
        if kind == "contains":
            return _verdict(
                found, f"expected text containing {excerpt(a['value'])}, got {excerpt(output)}"
            )
        return _verdict(not found, f"expected no {excerpt(a['value'])}, got {excerpt(output)}")
    if kind == "regex":
        return _regex(a["pattern"], output)
    if kind in ("is_json", "json_schema", "json_path"):
        return _json_kind(a, answer)
    if kind == "max_latency_ms":
        if answer.latency_ms is None:
            return 0.0, "the latency is unknown"
        ok = answer.latency_ms <= a["value"]
        return _verdict(ok, f"expected at most {a['value']} ms, took {answer.latency_ms} ms")
    if kind == "max_cost_usd":
        if answer.cost_usd is None:
            return 0.0, "the cost is unknown (no price for this model)"
        ok = answer.cost_usd <= a["value"]
        return _verdict(ok, f"expected at most ${a['value']:g}, cost ${answer.cost_usd:g}")
    return _graded(a, answer)


def _verdict(ok: bool, failure: str) -> tuple[float, str | None]:
    return (1.0, None) if ok else (0.0, failure)


def _regex(pattern: str, output: str) -> tuple[float, str | None]:
    try:
        found = regex.compile(pattern).search(
            output[:REGEX_OUTPUT_CHARS], timeout=REGEX_TIMEOUT_SECONDS
        )
    except TimeoutError:
        return 0.0, f"the pattern {excerpt(pattern)} took over {REGEX_TIMEOUT_SECONDS} s"
    return _verdict(
        found is not None, f"expected a match of {excerpt(pattern)}, got {excerpt(output)}"
    )


def _json_kind(a: dict[str, Any], answer: _Answer) -> tuple[float, str | None]:
    value, problem = answer.parsed()
    if problem is not None:
        return 0.0, problem
    if a["type"] == "is_json":
        return 1.0, None
    if a["type"] == "json_schema":
        return _schema(a["schema"], value)
    segments = parse_path(a["path"])
    found = select(value, segments)
    if has_wildcard(segments):
        got: Any = found
    elif not found:
        return 0.0, f"nothing at {a['path']} in {excerpt(value)}"
    else:
        got = found[0]
    ok = json_equal(got, a["equals"])
    return _verdict(ok, f"expected {a['path']} = {excerpt(a['equals'])}, got {excerpt(got)}")


def _bounded_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """JSON Schema's `pattern` keyword with the same time limit as the regex assertion."""
    if not isinstance(instance, str):
        return
    try:
        found = regex.search(pattern, instance, timeout=REGEX_TIMEOUT_SECONDS)
    except TimeoutError:
        yield ValidationError(f"the pattern {pattern!r} took over {REGEX_TIMEOUT_SECONDS} s")
        return
    if found is None:
        yield ValidationError(f"{excerpt(instance)} does not match {pattern!r}")


def _schema(schema: dict[str, Any], value: Any) -> tuple[float, str | None]:
    base = validators.validator_for(schema, default=Draft202012Validator)
    checker = validators.extend(base, {"pattern": _bounded_pattern})(schema)
    errors = sorted(checker.iter_errors(value), key=lambda e: list(e.absolute_path))[:3]
    if not errors:
        return 1.0, None
    listed = "; ".join(f"{e.json_path}: {e.message[:150]}" for e in errors)
    return 0.0, f"does not match the schema: {listed}"


def _graded(a: dict[str, Any], answer: _Answer) -> tuple[float, str | None]:
    if answer.grade is None:
        return 0.0, "no judge was given to grade the answer"
    try:
        score = answer.grade(a["prompt"], answer.output, answer.variables)
    except GradeError as exc:
        return 0.0, f"the judge {a['prompt']} gave no score: {str(exc)[:200]}"
    if not _number(score) or not 0 <= score <= 1:
        return 0.0, f"the judge {a['prompt']} returned {excerpt(score)}, not a score from 0 to 1"
    minimum = a.get("min_score", DEFAULT_MIN_SCORE)
    failure = f"the judge {a['prompt']} scored {score:g}, below {minimum:g}"
    return float(score), (None if score >= minimum else failure)
