"""Writes of the documentation engine: one transaction per user action.

Every write that changes what a document says (save, restore, move, delete) also writes
its SearchEntry in the same transaction, which is what keeps search in step.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import record_action
from buildsite.errors import Conflict, Forbidden, InvalidInput, NotFound, Problem
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role

from . import selectors
from .diffing import unified_diff
from .markdown import outline, split_front_matter
from .models import (
    DocSettings,
    Document,
    LinkReport,
    PublishRequest,
    Redirect,
    Revision,
    SearchEntry,
    Snapshot,
    SnapshotEntry,
)
from .paths import clean_path
from .rendering import RENDERER_VERSION, render_markdown
from .search.query import clean_indexed_text
from .validation import check_schema, link_problems

log = logging.getLogger(__name__)
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_MESSAGE = 500


@dataclass
class SaveResult:
    document: Document
    revision: Revision
    created: bool  # False: the content was identical, no revision was written
    warnings: list[dict[str, Any]] = field(default_factory=list)
    published: bool = False
    pending_approval: bool = False


@dataclass(frozen=True)
class Provenance:
    """Where a build-written revision came from: the build, its task and the ids of the
    prompt runs whose output the text used (steps.py decides which; the ids are kept
    only for runs of the same project). People's saves have none."""

    build: Any
    task: Any
    prompt_run_ids: tuple[int, ...] = ()


def _index(document: Document, revision: Revision) -> None:
    SearchEntry.objects.update_or_create(
        document=document,
        defaults={
            "title": clean_indexed_text(revision.title),
            "body": clean_indexed_text(split_front_matter(revision.body).content),
            "tags": " ".join(revision.tags),
        },
    )


def _lock(project: Project, path: str) -> Document | None:
    return (
        Document.objects.select_for_update(of=("self",))
        .filter(project=project, path=path, deleted_at__isnull=True)
        .select_related("current_revision")
        .first()
    )


def _conflict(document: Document, base_revision: int | None, body: str) -> Conflict:
    current = document.current_revision
    base = document.revisions.filter(number=base_revision).first() if base_revision else None
    since_base = (
        unified_diff(
            base.body,
            current.body,
            old_name=f"{document.path}@{base.number}",
            new_name=f"{document.path}@{current.number}",
        )
        if base is not None
        else ""
    )
    return Conflict(
        f"'{document.path}' is at revision {current.number}, not {base_revision}: "
        "someone saved in between. Merge their changes (diff) and save again with "
        f"base_revision {current.number}.",
        current_revision=current.number,
        diff=since_base,
        diff_to_yours=unified_diff(
            current.body, body, old_name=f"{document.path}@{current.number}", new_name="yours"
        ),
    )


@transaction.atomic
def save_document(
    *,
    user,
    project: Project,
    path: str,
    title: str | None,
    body: str,
    message: str = "",
    base_revision: int | None = None,
    tags: list[str] | None = None,
    publish: bool = False,
    provenance: Provenance | None = None,
) -> SaveResult:
    """Write a new revision (or nothing, when nothing changed). `base_revision` is the
    revision the writer started from: None or 0 for a new document. When nothing changed
    the current revision keeps its own provenance (no build takes over a person's text)."""
    require_role(user=user, project=project, role=Role.EDITOR)
    path = clean_path(path)
    if len(message) > MAX_MESSAGE:
        raise InvalidInput([Problem(f"at most {MAX_MESSAGE} characters", where="message")])
    document = _lock(project, path)
    if document is None and base_revision:
        raise Conflict(
            f"'{path}' does not exist (any more): save without base_revision to create it.",
            current_revision=None,
            diff="",
        )
    if document is not None and base_revision != document.current_revision.number:
        raise _conflict(document, base_revision, body)
    result = selectors.validate(project=project, path=path, title=title, body=body, tags=tags)
    if tags is None and document is not None and "tags" not in result.front_matter:
        # No tags given and none in the front-matter: the document keeps its tags.
        result.tags = list(document.current_revision.tags)
    result.raise_errors()
    warnings = [p.as_dict() for p in result.warnings]
    current = document.current_revision if document else None
    if current is not None and (current.title, current.body, current.tags) == (
        result.title,
        body,
        result.tags,
    ):
        outcome = SaveResult(document, current, created=False, warnings=current.warnings)
    else:
        outcome = _write_revision(
            user=user,
            project=project,
            path=path,
            document=document,
            title=result.title,
            body=body,
            tags=result.tags,
            front_matter=result.front_matter,
            anchors=result.anchors,
            message=message,
            warnings=warnings,
            provenance=provenance,
        )
    if publish:
        outcome.published, outcome.pending_approval = _request_publication(
            user=user, project=project, document=outcome.document, revision=outcome.revision
        )
    return outcome


def _write_revision(
    *,
    user,
    project: Project,
    path: str,
    document: Document | None,
    title: str,
    body: str,
    tags: list[str],
    front_matter: dict,
    anchors: list[str],
    message: str,
    warnings: list[dict],
    provenance: Provenance | None = None,
) -> SaveResult:
    now = timezone.now()
    if document is None:
        try:
            with transaction.atomic():
                document = Document.objects.create(
                    project=project, path=path, title=title, updated_at=now, updated_by=user
                )
        except IntegrityError as exc:
            raise Conflict(f"'{path}' was created by someone else meanwhile.") from exc
        # A new document at a path that used to redirect takes the path over.
        Redirect.objects.filter(project=project, old_path=path).delete()
    parent = document.current_revision
    revision = Revision.objects.create(
        document=document,
        number=(parent.number + 1) if parent else 1,
        parent=parent,
        title=title,
        body=body,
        front_matter=front_matter,
        tags=tags,
        author=user,
        message=message,
        warnings=warnings,
        html=render_markdown(body, link_base=selectors.docs_base(project)),
        html_version=RENDERER_VERSION,
        build=provenance.build if provenance else None,
        task=provenance.task if provenance else None,
        task_name=provenance.task.name if provenance else "",
    )
    if provenance is not None:
        _link_runs(project, revision, provenance.prompt_run_ids)
    document.title = title
    document.tags = tags
    document.anchors = anchors
    document.current_revision = revision
    document.updated_at = now
    document.updated_by = user if getattr(user, "pk", None) else None
    document.save()
    _index(document, revision)
    return SaveResult(document, revision, created=True, warnings=warnings)


def _link_runs(project: Project, revision: Revision, run_ids: tuple[int, ...]) -> None:
    # Ids come from task outputs, which a shell step's output could imitate: only runs
    # of this project are linked, so a revision never points into another project.
    if run_ids:
        runs = revision.prompt_runs.model.objects.filter(id__in=run_ids, project=project)
        revision.prompt_runs.set(runs)


def _request_publication(*, user, project: Project, document: Document, revision: Revision):
    """(published, pending_approval) after asking to publish `revision`."""
    if document.published_revision_id == revision.id:
        return True, False
    if not selectors.doc_settings(project).require_approval:
        Document.objects.filter(pk=document.pk).update(published_revision=revision)
        document.published_revision = revision
        _published_event(project, document, revision)
        _record(user, project, "document.publish", document.path, f"revision {revision.number}")
        return True, False
    PublishRequest.objects.filter(document=document, state=PublishRequest.State.PENDING).exclude(
        revision=revision
    ).update(state=PublishRequest.State.SUPERSEDED)
    _, requested = PublishRequest.objects.get_or_create(
        document=document,
        revision=revision,
        state=PublishRequest.State.PENDING,
        defaults={"requested_by": user},
    )
    if requested:
        detail = f"revision {revision.number}, waiting for approval"
        _record(user, project, "document.publish", document.path, detail)
    return False, True


def _record(user, project: Project, action: str, path: str, detail: str = "") -> None:
    record_action(
        actor=user, project=project, action=action, target=f"document {path}", detail=detail
    )


@transaction.atomic
def publish_document(
    *, user, project: Project, path: str, revision: int | None = None
) -> tuple[bool, bool]:
    require_role(user=user, project=project, role=Role.EDITOR)
    document, _ = selectors.find_document(project=project, path=path)
    target = selectors.revision_of(document, revision)
    return _request_publication(user=user, project=project, document=document, revision=target)


@transaction.atomic
def approve_publication(
    *, user, project: Project, path: str, revision: int | None = None
) -> Revision:
    """A second editor approves a pending publication; neither its requester nor the
    revision's author can approve their own."""
    require_role(user=user, project=project, role=Role.EDITOR)
    document, _ = selectors.find_document(project=project, path=path)
    pending = PublishRequest.objects.select_for_update(of=("self",)).filter(
        document=document, state=PublishRequest.State.PENDING
    )
    if revision is not None:
        pending = pending.filter(revision__number=revision)
    request = pending.select_related("revision").order_by("-requested_at").first()
    if request is None:
        raise NotFound(f"'{document.path}' has no publication waiting for approval.")
    if user.pk in (request.requested_by_id, request.revision.author_id):
        raise Forbidden("Publishing needs a second person: someone else has to approve.")
    request.state = PublishRequest.State.APPROVED
    request.approved_by = user
    request.approved_at = timezone.now()
    request.save()
    Document.objects.filter(pk=document.pk).update(published_revision=request.revision)
    _published_event(project, document, request.revision)
    detail = f"revision {request.revision.number}"
    _record(user, project, "document.approve", document.path, detail)
    return request.revision


def _published_event(project: Project, document: Document, revision: Revision) -> None:
    """An outbox event in the publishing transaction: notifications read it."""
    from tasks.models import Event
    from tasks.services import record_event

    record_event(
        project_id=project.id,
        type=Event.Type.DOCUMENT_PUBLISHED,
        data={"path": document.path, "revision": revision.number, "title": revision.title[:300]},
    )


@transaction.atomic
def restore_revision(
    *, user, project: Project, path: str, revision: int, message: str = ""
) -> SaveResult:
    """Write the content of an old revision as a new one (history is never rewritten)."""
    require_role(user=user, project=project, role=Role.EDITOR)
    document, _ = selectors.find_document(project=project, path=path)
    old = selectors.revision_of(document, revision)
    outcome = save_document(
        user=user,
        project=project,
        path=document.path,
        title=old.title,
        body=old.body,
        tags=list(old.tags),
        message=message or f"Restore revision {old.number}",
        base_revision=document.current_revision.number,
    )
    if outcome.created:  # restoring what is already current changes nothing
        detail = f"revision {old.number} as revision {outcome.revision.number}"
        _record(user, project, "document.restore", document.path, detail)
    return outcome


def _enqueue_link_check(project: Project, reason: str) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "docs_engine.jobs.check_links", project.id, reason, task_name=f"links-{project.slug}"
        )
    )


@transaction.atomic
def move_document(
    *, user, project: Project, path: str, new_path: str, message: str = ""
) -> Document:
    """Rename/move: the revisions stay with the document, the old path redirects."""
    require_role(user=user, project=project, role=Role.EDITOR)
    document, _ = selectors.find_document(project=project, path=path)
    new_path = clean_path(new_path, where="to")
    old_path = document.path
    if new_path == old_path:
        return document
    if Document.objects.filter(project=project, path=new_path, deleted_at__isnull=True).exists():
        raise Conflict(f"A document already lives at '{new_path}'.")
    Redirect.objects.filter(project=project, old_path=new_path).delete()
    document.path = new_path
    document.save(update_fields=["path"])
    Redirect.objects.create(project=project, old_path=old_path, document=document)
    _record(user, project, "document.move", old_path, f"to {new_path}")
    log.info("moved %s:%s to %s (%s)", project.slug, old_path, new_path, message)
    _enqueue_link_check(project, f"moved {old_path} to {new_path}")
    return document


@transaction.atomic
def delete_document(*, user, project: Project, path: str) -> None:
    """Soft delete: the revisions stay for snapshots; search and redirects forget it."""
    require_role(user=user, project=project, role=Role.EDITOR)
    document, _ = selectors.find_document(project=project, path=path)
    document.deleted_at = timezone.now()
    document.save(update_fields=["deleted_at"])
    _record(user, project, "document.delete", document.path)
    SearchEntry.objects.filter(document=document).delete()
    Redirect.objects.filter(document=document).delete()
    PublishRequest.objects.filter(document=document, state=PublishRequest.State.PENDING).update(
        state=PublishRequest.State.SUPERSEDED
    )
    _enqueue_link_check(project, f"deleted {document.path}")


@transaction.atomic
def create_snapshot(
    *, user, project: Project, name: str, description: str = "", prefix: str | None = None
) -> Snapshot:
    """Freeze the current revision of every live document (under `prefix`, if given)."""
    require_role(user=user, project=project, role=Role.EDITOR)
    name = (name or "").strip()
    if not SNAPSHOT_NAME.match(name):
        raise InvalidInput(
            [Problem("1-64 letters, digits, '.', '-' or '_' (for example v1.2)", where="name")]
        )
    if Snapshot.objects.filter(project=project, name=name).exists():
        raise Conflict(f"A snapshot named '{name}' already exists.")
    snapshot = Snapshot.objects.create(
        project=project,
        name=name,
        description=description[:500],
        created_by=user if getattr(user, "pk", None) else None,
    )
    docs = selectors.list_documents(project=project, prefix=clean_path(prefix) if prefix else None)
    entries = SnapshotEntry.objects.bulk_create(
        SnapshotEntry(snapshot=snapshot, path=doc.path, revision_id=doc.current_revision_id)
        for doc in docs
        if doc.current_revision_id
    )
    record_action(
        actor=user,
        project=project,
        action="snapshot.create",
        target=f"snapshot {name}",
        detail=f"{len(entries)} document(s)" + (f" under {prefix}" if prefix else ""),
    )
    return snapshot


@transaction.atomic
def delete_snapshot(*, user, project: Project, name: str) -> None:
    require_role(user=user, project=project, role=Role.MAINTAINER)
    selectors.get_snapshot(project=project, name=name).delete()
    record_action(actor=user, project=project, action="snapshot.delete", target=f"snapshot {name}")


@transaction.atomic
def update_doc_settings(
    *,
    user,
    project: Project,
    require_approval: bool,
    front_matter_schema: dict | None,
    max_body_bytes: int,
) -> DocSettings:
    require_role(user=user, project=project, role=Role.MAINTAINER)
    check_doc_settings(front_matter_schema=front_matter_schema, max_body_bytes=max_body_bytes)
    settings, _ = DocSettings.objects.update_or_create(
        project=project,
        defaults={
            "require_approval": require_approval,
            "front_matter_schema": front_matter_schema,
            "max_body_bytes": max_body_bytes,
        },
    )
    record_action(
        actor=user,
        project=project,
        action="docs.settings",
        target="docs settings",
        detail=f"approval {'required' if require_approval else 'not required'}, "
        f"max body {max_body_bytes} bytes, "
        f"front-matter schema {'set' if front_matter_schema is not None else 'none'}",
    )
    return settings


def check_doc_settings(*, front_matter_schema: dict | None, max_body_bytes: int) -> None:
    """What docs settings must satisfy, wherever they are written (API, pages, admin)."""
    if front_matter_schema is not None:
        check_schema(front_matter_schema)
    if not 1_024 <= max_body_bytes <= 10 * 1024 * 1024:
        raise InvalidInput([Problem("between 1024 and 10485760 bytes", where="max_body_bytes")])


@transaction.atomic
def run_link_check(*, project: Project, reason: str) -> LinkReport:
    """Re-validate the links of every live document; report what broke since last time."""
    site = selectors.site_index(project)
    broken: list[dict[str, Any]] = []
    docs = selectors.live_documents(project).select_related("current_revision")
    for doc in docs.order_by("path"):
        if doc.current_revision is None:
            continue
        split = split_front_matter(doc.current_revision.body)
        errors, _ = link_problems(
            path=doc.path,
            doc=outline(split.content, split.content_offset),
            own_anchors=set(doc.anchors or []),
            site=site,
        )
        broken.extend({"path": doc.path, "line": p.line, "msg": p.message} for p in errors)
    previous = selectors.link_reports(project).first()
    known = {(b["path"], b["msg"]) for b in previous.broken} if previous else set()
    newly = [b for b in broken if (b["path"], b["msg"]) not in known]
    return LinkReport.objects.create(
        project=project, reason=reason[:300], broken=broken, newly_broken=newly
    )
