"""Pipeline definitions: YAML in, a validated JSON spec out, every problem with its line.

Pure: no database. The spec is what a PipelineVersion stores and what builds run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import yaml

from buildsite.errors import InvalidInput, Problem
from buildsite.templating import TemplateError, check_syntax
from tasks.dag import graph_problems
from vault.rules import name_problem

from .globs import pattern_problem
from .steps import step_kinds

Spec = dict[str, Any]
Path = tuple[Any, ...]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$"
POOL_PATTERN = r"^[a-z][a-z0-9_-]{0,49}$"
DEFAULT_CLAIMS = {"cpu": 1}
MAX_TASKS = 20_000

_claims = {
    "type": "object",
    "propertyNames": {"pattern": POOL_PATTERN},
    "additionalProperties": {"type": "integer", "minimum": 0},
}
_env = {
    "type": "object",
    "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
_seconds = {"type": "number", "exclusiveMinimum": 0}
_task = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "needs": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "steps": {"type": "array", "items": {"type": "object"}},
        "priority": {"type": "integer"},
        "resources": _claims,
        "timeout": _seconds,
        "retries": {"type": "integer", "minimum": 0, "maximum": 20},
        "cache": {"type": "boolean"},
        "inputs": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "artifacts": {
            "type": "array",
            "maxItems": 100,
            "items": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["path"],
                        "properties": {
                            "path": {"type": "string", "minLength": 1},
                            "optional": {"type": "boolean"},
                        },
                    },
                ]
            },
        },
        "deadline": _seconds,
        "network": {"type": "boolean"},
        # Repository builds: false for tasks that only use their needs' artifacts.
        "checkout": {"type": "boolean"},
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                key: {"type": "integer", "minimum": 1, "maximum": 1_000_000}
                for key in ("memory_mb", "processes", "cpu_seconds", "log_mb", "workspace_mb")
            },
        },
        "on_deadline": {"enum": ["record", "cancel"]},
        "env": _env,
        # Names of project secrets its shell steps get as variables (checked by
        # `_secret_problems`, with the message and rule of vault.rules).
        "secrets": {"type": "array", "maxItems": 100, "uniqueItems": True},
    },
}
SCHEMA = {
    "type": "object",
    "required": ["tasks"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "params": {"type": "object"},
        "resources": _claims,
        "env": _env,
        "timeout": _seconds,
        "tasks": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": MAX_TASKS,
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": _task,
        },
    },
}
_validator = jsonschema.Draft202012Validator(SCHEMA)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line_map(node: yaml.Node, path: Path = ()) -> Iterator[tuple[Path, int]]:
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            yield sub, key.start_mark.line + 1
            for inner_path, line in _line_map(value, sub):
                if inner_path != sub:
                    yield inner_path, line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _line_map(item, (*path, index))


class _Lines:
    def __init__(self, node: yaml.Node | None) -> None:
        self._lines: dict[Path, int] = dict(_line_map(node)) if node is not None else {}

    def at(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get(())


def _where(path: Path) -> str | None:
    return ".".join(str(p) for p in path) or None


MAX_DEFINITION_CHARS = 2_000_000
MAX_DEPTH = 40


def _structure_problem(text: str) -> Problem | None:
    """Refuse, before anything is built, YAML whose size is not its text's: aliases
    (a 367-byte alias bomb expands to 58 MB) and deep nesting (recursion)."""
    if len(text) > MAX_DEFINITION_CHARS:
        return Problem(f"a pipeline definition is at most {MAX_DEFINITION_CHARS} characters", 1)
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            return Problem("YAML anchors and aliases (&name, *name) are not allowed", line)
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return Problem(f"nested more than {MAX_DEPTH} levels deep", line)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1
    return None


def parse_definition(text: str) -> Spec:
    """Parse and validate; raises InvalidInput listing every problem found."""
    try:
        if problem := _structure_problem(text):
            raise InvalidInput([problem])
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput([Problem(f"invalid YAML: {reason}", line)]) from exc
    if not isinstance(data, dict):
        raise InvalidInput(
            [Problem("a pipeline definition must be a YAML mapping with 'tasks'", 1)]
        )
    lines = _Lines(node)
    problems = [
        Problem(
            _schema_message(err),
            lines.at(tuple(err.absolute_path)),
            _where(tuple(err.absolute_path)),
        )
        for err in sorted(
            _validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))
        )
    ]
    if problems:
        raise InvalidInput(problems)
    spec = _normalise(data)
    for name, task in spec["tasks"].items():
        problems.extend(_step_problems(name, task["steps"], lines))
        problems.extend(_path_problems(name, task, lines))
        problems.extend(_secret_problems(name, task, lines))
    task_lines = {name: lines.at(("tasks", name)) or 0 for name in spec["tasks"]}
    problems.extend(graph_problems({n: t["needs"] for n, t in spec["tasks"].items()}, task_lines))
    if problems:
        raise InvalidInput(problems)
    for name in spec["tasks"]:
        spec["tasks"][name]["line"] = task_lines[name]
    return spec


def _schema_message(err: jsonschema.ValidationError) -> str:
    message = str(err.message)
    if err.validator == "additionalProperties":
        return message.replace("Additional properties are not allowed", "unknown key")
    if err.validator == "pattern" and err.validator_value == NAME_PATTERN:
        return f"{err.instance!r} is not a valid task name (letters, digits, _ and -)"
    return message


def _normalise(data: dict[str, Any]) -> Spec:
    default_claims = data.get("resources", DEFAULT_CLAIMS)
    tasks: dict[str, Any] = {}
    for name, task in data["tasks"].items():
        task = task or {}
        if "resources" in task or task.get("steps"):
            claims = dict(task.get("resources", default_claims))
        else:
            # Nothing to run: it would hold a pool for no time, so the default claim does
            # not apply (as a phony target takes no job slot in make or ninja).
            claims = {}
        for kind in step_kinds().values():  # a kind may claim pools (prompt: llm)
            if any(kind.name in step for step in task.get("steps", [])):
                for pool, amount in kind.claims.items():
                    claims.setdefault(pool, amount)
        tasks[name] = {
            "needs": list(task.get("needs", [])),
            "steps": list(task.get("steps", [])),
            "priority": task.get("priority", 0),
            "resources": claims,
            "timeout": task.get("timeout", data.get("timeout")),
            "retries": task.get("retries", 0),
            "cache": task.get("cache", False),
            "inputs": list(task.get("inputs", [])),
            "artifacts": [
                {"path": a, "optional": False} if isinstance(a, str) else {"optional": False, **a}
                for a in task.get("artifacts", [])
            ],
            "deadline": task.get("deadline"),
            "network": task.get("network", False),
            "checkout": task.get("checkout", True),
            "limits": dict(task.get("limits", {})),
            "on_deadline": task.get("on_deadline", "record"),
            "env": {k: str(v) for k, v in {**data.get("env", {}), **task.get("env", {})}.items()},
            "secrets": list(task.get("secrets", [])),
        }
    return {
        "name": data.get("name", ""),
        "description": data.get("description", ""),
        "params": dict(data.get("params") or {}),
        "tasks": tasks,
    }


def _step_problems(task: str, steps: list[dict[str, Any]], lines: _Lines) -> list[Problem]:
    problems: list[Problem] = []
    for index, step in enumerate(steps):
        path = ("tasks", task, "steps", index)
        where = f"tasks.{task}.steps[{index}]"
        registered = step_kinds()
        kinds = [k for k in registered if k in step]
        if len(kinds) != 1:
            problems.append(
                Problem(
                    f"a step needs exactly one of: {', '.join(registered)}", lines.at(path), where
                )
            )
            continue
        kind = kinds[0]
        unknown = sorted(set(step) - registered[kind].keys)
        if unknown:
            problems.append(
                Problem(
                    f"unknown key(s) for a {kind} step: {', '.join(unknown)}", lines.at(path), where
                )
            )
        if not isinstance(step[kind], str) or not step[kind].strip():
            problems.append(
                Problem(f"'{kind}' must be a non-empty string", lines.at((*path, kind)), where)
            )
        if "timeout" in step and not (
            isinstance(step["timeout"], int | float) and step["timeout"] > 0
        ):
            problems.append(
                Problem("timeout must be a positive number", lines.at((*path, "timeout")), where)
            )
        for message, key in registered[kind].check(step):
            problems.append(Problem(message, lines.at((*path, key)), where))
        problems.extend(_template_problems(step, path, where, lines))
    return problems


def _path_problems(task: str, spec: dict[str, Any], lines: _Lines) -> list[Problem]:
    """`artifacts:` and `inputs:` name files inside the task's workspace, nothing else."""
    problems: list[Problem] = []
    if spec["artifacts"] and not spec["steps"]:
        problems.append(
            Problem(
                "a task without steps has no files to hand on: remove 'artifacts'",
                lines.at(("tasks", task, "artifacts")),
                f"tasks.{task}.artifacts",
            )
        )
    patterns = [("inputs", i, p) for i, p in enumerate(spec["inputs"])]
    patterns += [("artifacts", i, a["path"]) for i, a in enumerate(spec["artifacts"])]
    for key, index, pattern in patterns:
        if message := pattern_problem(pattern):
            path = ("tasks", task, key, index)
            problems.append(Problem(message, lines.at(path), f"tasks.{task}.{key}[{index}]"))
    return problems


def _secret_problems(task: str, spec: dict[str, Any], lines: _Lines) -> list[Problem]:
    """`secrets:` names project secrets; whether they exist is seen when the task runs
    (a secret may be set after the pipeline is saved)."""
    problems: list[Problem] = []
    for index, name in enumerate(spec["secrets"]):
        if message := name_problem(name):
            path = ("tasks", task, "secrets", index)
            problems.append(Problem(message, lines.at(path), f"tasks.{task}.secrets[{index}]"))
    return problems


def _template_problems(value: Any, path: Path, where: str, lines: _Lines) -> list[Problem]:
    if isinstance(value, str):
        try:
            check_syntax(value, where=where)
        except TemplateError as exc:
            base = lines.at(path) or 0
            return [
                Problem(p.message, base + (p.line or 1) - 1 if base else p.line, where)
                for p in exc.problems
            ]
        return []
    if isinstance(value, dict):
        return [
            p for k, v in value.items() for p in _template_problems(v, (*path, k), where, lines)
        ]
    if isinstance(value, list):
        return [
            p for i, v in enumerate(value) for p in _template_problems(v, (*path, i), where, lines)
        ]
    return []


def merge_params(spec: Spec, given: dict[str, Any] | None) -> dict[str, Any]:
    """Definition defaults overlaid with the trigger's values; unknown names are refused
    because a typo in a parameter name would otherwise be silently ignored."""
    given = dict(given or {})
    defaults = spec.get("params", {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise InvalidInput(
            [
                Problem(f"unknown parameter '{u}' (this pipeline takes: {known})", where="params")
                for u in unknown
            ]
        )
    return {**defaults, **given}
