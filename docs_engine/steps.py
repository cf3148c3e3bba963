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
"""

from __future__ import annotations

from typing import Any

from builds.steps import StepContext, StepFailed
from buildsite.errors import Conflict, DomainError, InvalidInput

from . import selectors, services
from .paths import clean_path

TRUE_WORDS = {"true", "yes", "on", "1"}


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
    for _attempt in range(3):
        try:
            outcome = _save(step, ctx, author, path, body, message)
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


def _save(step, ctx: StepContext, author, path: str, body: str, message: str):
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
    )


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
