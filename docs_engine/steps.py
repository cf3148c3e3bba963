"""The `document` build step: write a revision as the build's author.

    - document: releases/{{ params.version }}
      body: "{{ tasks.notes.outputs.notes }}"
      title: Release {{ params.version }}     # optional: defaults to the current title
      message: Notes for {{ params.version }} # optional
      publish: true                           # optional
      tags: [release]                         # optional
      snapshot: v{{ params.version }}         # optional: snapshot the docs after writing

Identical content writes no new revision; a validation error fails the task with every
problem (and its line) in the task log.

A revision written here records its provenance: the build, the task, and the prompt runs
whose output it used. Those runs are read from run ids in task outputs (`prompt_run`
and every `<name>_run` key a prompt step sets) of
  - this task's earlier steps, and
  - the tasks this task needs that a `document` step of the task refers to in its
    templates (`tasks.<name>...` or `tasks['<name>']...`); when the step's definition is
    not at hand, every task it needs.
A run of an upstream task restored from the cache is the run that produced the text, so
it is linked as it is (it belongs to the build that ran it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from builds.steps import StepContext, StepFailed
from buildsite.errors import Conflict, DomainError, InvalidInput

from . import selectors, services
from .paths import clean_path

TRUE_WORDS = {"true", "yes", "on", "1"}
# `tasks.notes.outputs...` or `tasks["notes"]...`, as a template of the step names them.
TASK_REFERENCE = re.compile(r"""\btasks\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['"]([^'"]+)['"]\s*\])""")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return bool(value)


def _tags(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list):
        return [str(t) for t in value]
    raise StepFailed("tags must be a list or a comma-separated string")


def run_document_step(step: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    author = ctx.build.triggered_by
    if author is None:
        raise StepFailed(
            "a document step writes as the build's author, and this build has none "
            "(it was triggered by the system): trigger it as a user"
        )
    try:
        path = clean_path(str(step.get("document", "")), where="document")
    except InvalidInput as exc:
        raise StepFailed(exc.message) from exc
    body = str(step.get("body", ""))
    message = str(step.get("message") or f"Written by build #{ctx.build.id}, task {ctx.task.name}")
    outcome = None
    provenance = _provenance(ctx)
    for _attempt in range(3):
        try:
            outcome = _save(step, ctx, author, path, body, message, provenance)
            break
        except Conflict:
            continue  # someone saved between our read and our write: read again
        except InvalidInput as exc:
            ctx.log(f"document {path}: {len(exc.problems)} problem(s)\n")
            for problem in exc.problems:
                where = f"line {problem.line}: " if problem.line else ""
                field = f"{problem.where}: " if problem.where else ""
                ctx.log(f"  {where}{field}{problem.message}\n")
            raise StepFailed(f"document '{path}' failed validation") from exc
        except DomainError as exc:
            raise StepFailed(f"document '{path}': {exc.message}") from exc
    if outcome is None:
        raise StepFailed(f"document '{path}' kept changing under this build; try again")
    revision = outcome.revision.number
    state = "new revision" if outcome.created else "unchanged, no new revision"
    ctx.log(f"document {path}: revision {revision} ({state})\n")
    for warning in outcome.warnings:
        ctx.log(f"  warning: line {warning.get('line', '-')}: {warning['msg']}\n")
    outputs: dict[str, Any] = {
        "revision": revision,
        "path": outcome.document.path,
        "changed": outcome.created,
        "published": outcome.published,
    }
    if step.get("snapshot"):
        outputs["snapshot"] = _snapshot(str(step["snapshot"]), ctx, author)
    return outputs


def _save(
    step,
    ctx: StepContext,
    author,
    path: str,
    body: str,
    message: str,
    provenance: services.Provenance,
):
    try:
        document, _ = selectors.find_document(project=ctx.project, path=path)
    except DomainError:
        document = None
    title = step.get("title")
    if not title and document is not None and document.path == path:
        title = document.title
    return services.save_document(
        user=author,
        project=ctx.project,
        path=path,
        title=str(title) if title else None,
        body=body,
        message=message,
        base_revision=(
            document.current_revision.number
            if document is not None and document.path == path
            else None
        ),
        tags=_tags(step.get("tags")),
        publish=_flag(step.get("publish", False)),
        provenance=provenance,
    )


def _provenance(ctx: StepContext) -> services.Provenance:
    """The build, the task and the prompt runs the text used (the rule is in the module
    docstring)."""
    run_ids = _run_ids(ctx.outputs)
    names = _referenced_tasks(ctx)
    if names:
        for outputs in ctx.build.tasks.filter(name__in=names).values_list("outputs", flat=True):
            run_ids |= _run_ids(outputs or {})
    return services.Provenance(
        build=ctx.build, task=ctx.task, prompt_run_ids=tuple(sorted(run_ids))
    )


def _referenced_tasks(ctx: StepContext) -> set[str]:
    needs = set(ctx.task.needs or [])
    # The engine hands the step rendered; the task's definition still has the raw text.
    # Which of several document steps is running is not known here, so the references
    # of all of them count.
    raw = [s for s in ctx.task_spec.get("steps", []) if isinstance(s, dict) and "document" in s]
    if not raw:
        return needs
    found = {a or b for text in _strings(raw) for a, b in TASK_REFERENCE.findall(text)}
    return needs & found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _run_ids(outputs: dict[str, Any]) -> set[int]:
    return {
        value
        for key, value in outputs.items()
        if (key == "prompt_run" or key.endswith("_run"))
        and isinstance(value, int)
        and not isinstance(value, bool)
    }


def _snapshot(name: str, ctx: StepContext, author) -> str:
    try:
        services.create_snapshot(
            user=author,
            project=ctx.project,
            name=name,
            description=f"Created by build #{ctx.build.id}",
        )
    except DomainError as exc:
        raise StepFailed(f"snapshot '{name}': {exc.message}") from exc
    ctx.log(f"snapshot {name} created\n")
    return name
