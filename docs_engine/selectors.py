"""Reads of the documentation engine. Callers check the role (get_project) first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction
from django.db.models import Prefetch, QuerySet

from buildsite.errors import NotFound
from buildsite.models import Project

from . import search
from .diffing import Row, side_by_side, unified_diff
from .markdown import split_front_matter
from .models import (
    DocSettings,
    Document,
    LinkReport,
    PublishRequest,
    Redirect,
    Revision,
    Snapshot,
)
from .paths import clean_path
from .rendering import RENDERER_VERSION, render_markdown
from .search.query import marked_to_html, parse_query
from .validation import Result, Site, validate_document


def doc_settings(project: Project) -> DocSettings:
    """The project's settings, or unsaved defaults."""
    found = DocSettings.objects.filter(project=project).first()
    return found or DocSettings(project=project)


def live_documents(project: Project) -> QuerySet[Document]:
    return Document.objects.filter(project=project, deleted_at__isnull=True)


def list_documents(*, project: Project, prefix: str | None = None) -> QuerySet[Document]:
    qs = live_documents(project).select_related("updated_by")
    if prefix:
        qs = qs.filter(search.within_q(prefix))
    return qs.order_by("path")


def find_document(*, project: Project, path: str) -> tuple[Document, str | None]:
    """The live document at `path` (following a move's redirect) and the path it was
    reached by when that differs."""
    path = clean_path(path)
    doc = live_documents(project).filter(path=path).select_related("current_revision").first()
    if doc is not None:
        return doc, None
    redirect = (
        Redirect.objects.filter(project=project, old_path=path, document__deleted_at__isnull=True)
        .select_related("document__current_revision")
        .first()
    )
    if redirect is not None:
        return redirect.document, path
    raise NotFound(f"No document '{path}'.")


def site_index(project: Project) -> Site:
    anchors = {
        path: frozenset(doc_anchors or [])
        for path, doc_anchors in live_documents(project).values_list("path", "anchors")
    }
    redirects = dict(
        Redirect.objects.filter(project=project, document__deleted_at__isnull=True).values_list(
            "old_path", "document__path"
        )
    )
    return Site(anchors=anchors, redirects=redirects)


def validate(
    *, project: Project, path: str, title: str | None, body: str, tags: list[str] | None
) -> Result:
    settings = doc_settings(project)
    return validate_document(
        path=path,
        title=title,
        body=body,
        tags=tags,
        site=site_index(project),
        schema=settings.front_matter_schema,
        max_body_bytes=settings.max_body_bytes,
    )


@dataclass
class Preview:
    html: str
    result: Result


def preview(*, project: Project, path: str, title: str | None, body: str) -> Preview:
    """What a save would do, without saving: the page and every problem at its line."""
    result = validate(project=project, path=path, title=title, body=body, tags=None)
    size_ok = not any("bytes; the limit" in p.message for p in result.errors)
    html = render_markdown(body, link_base=docs_base(project)) if size_ok else ""
    return Preview(html=html, result=result)


def docs_base(project: Project) -> str:
    return f"/p/{project.slug}/docs/"


def _run_ids() -> Prefetch:
    # Provenance shows run ids only: never load the runs' prompts and answers.
    runs = Revision._meta.get_field("prompt_runs").related_model.objects.only("id")
    return Prefetch("prompt_runs", queryset=runs)


def revisions_of(document: Document) -> QuerySet[Revision]:
    return (
        document.revisions.select_related("author").prefetch_related(_run_ids()).order_by("-number")
    )


def provenance_of(revision: Revision) -> dict[str, Any] | None:
    """`{"build": id, "task": name, "prompt_runs": [ids]}` for a revision a build wrote,
    None for one written by a person. `build` turns None when the build was deleted;
    the task is named by its name (a task's id means nothing outside its build)."""
    if not revision.task_name:
        return None
    return {
        "build": revision.build_id,
        "task": revision.task_name,
        "prompt_runs": sorted(run.id for run in revision.prompt_runs.all()),
    }


def revisions_of_build(*, build: Any) -> QuerySet[Revision]:
    """The revisions a build's document steps wrote, oldest first."""
    return (
        Revision.objects.filter(build=build)
        .select_related("document")
        .defer("body", "html", "front_matter", "warnings")
        .prefetch_related(_run_ids())
        .order_by("id")
    )


def revision_of(
    document: Document, number: int | None = None, *, published: bool = False
) -> Revision:
    """Revision `number`, else the published one when asked for (404 when there is
    none), else the current one. The API and the reader page both ask here."""
    if published and number is None:
        if document.published_revision_id is None:
            raise NotFound(f"'{document.path}' has no published revision.")
        number = document.published_revision.number
    if number is None:
        if document.current_revision is None:
            raise NotFound(f"'{document.path}' has no revision.")
        return document.current_revision
    revision = document.revisions.filter(number=number).select_related("author").first()
    if revision is None:
        raise NotFound(f"'{document.path}' has no revision {number}.")
    return revision


def rendered_html(revision: Revision, project: Project) -> str:
    """The cached HTML of a revision, rendered again when the renderer changed."""
    if revision.html_version == RENDERER_VERSION:
        return revision.html
    html = render_markdown(revision.body, link_base=docs_base(project))
    Revision.objects.filter(pk=revision.pk).update(html=html, html_version=RENDERER_VERSION)
    revision.html, revision.html_version = html, RENDERER_VERSION
    return html


@dataclass
class Diff:
    old: Revision
    new: Revision
    unified: str
    rows: list[Row]


def diff_revisions(document: Document, old_number: int, new_number: int) -> Diff:
    old = revision_of(document, old_number)
    new = revision_of(document, new_number)
    return Diff(
        old=old,
        new=new,
        unified=revision_diff_text(old, new, document.path),
        rows=side_by_side(old.body, new.body),
    )


def revision_diff_text(old: Revision, new: Revision, path: str) -> str:
    text = unified_diff(
        old.body, new.body, old_name=f"{path}@{old.number}", new_name=f"{path}@{new.number}"
    )
    if old.title != new.title:
        text = f"title: {old.title!r} -> {new.title!r}\n" + text
    return text


@dataclass
class TreeNode:
    depth: int
    name: str
    path: str
    document: Document | None


def document_tree(project: Project) -> list[TreeNode]:
    """Folders and documents in path order, folders implied by the paths."""
    nodes: list[TreeNode] = []
    seen: set[str] = set()
    for doc in list_documents(project=project):
        segments = doc.path.split("/")
        for depth in range(len(segments) - 1):
            folder = "/".join(segments[: depth + 1])
            if folder not in seen:
                seen.add(folder)
                nodes.append(TreeNode(depth, segments[depth], folder, None))
        seen.add(doc.path)
        nodes.append(TreeNode(len(segments) - 1, segments[-1], doc.path, doc))
    return nodes


def pending_publication(document: Document) -> PublishRequest | None:
    return (
        PublishRequest.objects.filter(document=document, state=PublishRequest.State.PENDING)
        .select_related("revision", "requested_by")
        .order_by("-requested_at")
        .first()
    )


def redirects_to(document: Document) -> list[str]:
    return list(document.redirects.values_list("old_path", flat=True).order_by("old_path"))


# --- snapshots ------------------------------------------------------------------------


def snapshots_of(project: Project) -> QuerySet[Snapshot]:
    return Snapshot.objects.filter(project=project).select_related("created_by")


def get_snapshot(*, project: Project, name: str) -> Snapshot:
    snapshot = snapshots_of(project).filter(name=name).first()
    if snapshot is None:
        raise NotFound(f"No snapshot '{name}'.")
    return snapshot


def snapshot_entry(snapshot: Snapshot, path: str):
    entry = snapshot.entries.filter(path=path).select_related("revision").first()
    if entry is None:
        raise NotFound(f"Snapshot '{snapshot.name}' has no document '{path}'.")
    return entry


@dataclass
class SnapshotChange:
    path: str  # the path in the snapshot (or today's path for an added document)
    status: str  # unchanged | changed | moved | deleted | added
    current_path: str | None
    snapshot_revision: int | None
    current_revision: int | None
    diff: str


def snapshot_changes(snapshot: Snapshot) -> list[SnapshotChange]:
    """Every document of the snapshot against today, plus documents added since."""
    entries = list(snapshot.entries.select_related("revision__document__current_revision"))
    changes: list[SnapshotChange] = []
    seen_docs: set[int] = set()
    for entry in entries:
        doc = entry.revision.document
        seen_docs.add(doc.id)
        current = None if doc.deleted_at else doc.current_revision
        if current is None:
            changes.append(
                SnapshotChange(entry.path, "deleted", None, entry.revision.number, None, "")
            )
            continue
        diff = (
            revision_diff_text(entry.revision, current, doc.path)
            if current.id != entry.revision_id
            else ""
        )
        status = "moved" if doc.path != entry.path else ("changed" if diff else "unchanged")
        changes.append(
            SnapshotChange(
                entry.path, status, doc.path, entry.revision.number, current.number, diff
            )
        )
    added = live_documents(snapshot.project).exclude(id__in=seen_docs)
    for doc in added.filter(created_at__gt=snapshot.created_at).select_related("current_revision"):
        number = doc.current_revision.number if doc.current_revision else None
        changes.append(SnapshotChange(doc.path, "added", doc.path, None, number, ""))
    return sorted(changes, key=lambda c: c.path)


# --- search ---------------------------------------------------------------------------


def search_documents(
    *,
    project: Project,
    q: str = "",
    tag: str | None = None,
    prefix: str | None = None,
    author: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[search.Hit]:
    """Ranked hits with highlighted snippets (HTML-escaped apart from <mark>)."""
    author_id = None
    if author:
        author_id = (
            get_user_model().objects.filter(username=author).values_list("id", flat=True).first()
        )
        if author_id is None:
            return []
    filters = search.Filters(
        tag=(tag or "").strip().lower() or None,
        path_prefix=(prefix or "").strip("/") or None,
        author_id=author_id,
        since=since,
    )
    limit = max(1, min(limit, 100))
    offset = max(0, offset)
    terms = parse_query(q)
    if not terms:
        return _recent(project, filters, limit, offset)
    try:
        # A savepoint: on PostgreSQL a failed statement must not poison the request.
        with transaction.atomic():
            return search.backend().search(
                project_id=project.id, terms=terms, filters=filters, limit=limit, offset=offset
            )
    except DatabaseError:
        # The query builder only emits well-formed expressions; this is the last guard
        # against an input the database still refuses (never a 500 for a search box).
        return []


def _recent(project: Project, filters: search.Filters, limit: int, offset: int):
    """No search words: the documents matching the filters, newest first."""
    qs = live_documents(project).select_related("current_revision")
    if filters.path_prefix:
        qs = qs.filter(search.within_q(filters.path_prefix))
    if filters.author_id is not None:
        qs = qs.filter(updated_by_id=filters.author_id)
    if filters.since is not None:
        qs = qs.filter(updated_at__gte=filters.since)
    hits = []
    for doc in qs.order_by("-updated_at", "path"):
        if filters.tag and filters.tag not in (doc.tags or []):
            continue
        body = split_front_matter(doc.current_revision.body).content if doc.current_revision else ""
        hits.append(
            search.Hit(
                document_id=doc.id,
                path=doc.path,
                title=doc.title,
                title_html=marked_to_html(doc.title),
                snippet=marked_to_html(" ".join(body.split()[:30])),
                rank=0.0,
                updated_at=doc.updated_at,
                tags=doc.tags,
            )
        )
        if len(hits) >= offset + limit:
            break
    return hits[offset:]


def link_reports(project: Project) -> QuerySet[LinkReport]:
    return LinkReport.objects.filter(project=project)
