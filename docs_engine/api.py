"""JSON API of the documentation engine, mounted under /api/projects.

Document sub-resources follow a `/-/` separator (`docs/guides/install/-/revisions`);
`-` can never be a path segment, so the two never collide. Project-level routes are
declared before the catch-all document routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Query, Router, Schema, Status

from buildsite.roles import Role
from buildsite.selectors import get_project
from search import selectors as search_selectors

from . import selectors, services

router = Router(tags=["docs"])


# --- schemas --------------------------------------------------------------------------


class DocumentIn(Schema):
    title: str | None = None
    body: str
    message: str = ""
    base_revision: int | None = None
    tags: list[str] | None = None
    publish: bool = False


class SaveOut(Schema):
    path: str
    revision: int
    created: bool
    warnings: list[dict[str, Any]]
    published: bool
    pending_approval: bool


class ProvenanceOut(Schema):
    """Where a revision a build wrote came from (null for people's revisions)."""

    build: int | None  # None once the build was deleted
    task: str  # the task's name in that build
    prompt_runs: list[int]


class DocumentOut(Schema):
    path: str
    title: str
    body: str
    html: str
    revision: int
    tags: list[str]
    front_matter: dict[str, Any]
    warnings: list[dict[str, Any]]
    published_revision: int | None
    redirected_from: str | None = None
    updated_at: datetime
    author: str | None
    provenance: ProvenanceOut | None


class DocumentListItem(Schema):
    path: str
    title: str
    revision: int | None
    published_revision: int | None
    tags: list[str]
    updated_at: datetime
    updated_by: str | None


class RevisionOut(Schema):
    number: int
    parent: int | None
    title: str
    author: str | None
    message: str
    created_at: datetime
    warnings: list[dict[str, Any]]
    provenance: ProvenanceOut | None


class RevisionDetail(RevisionOut):
    body: str
    html: str
    tags: list[str]
    front_matter: dict[str, Any]


class DiffOut(Schema):
    from_: int = Field(..., alias="from")
    to: int
    diff: str


class RestoreIn(Schema):
    revision: int
    message: str = ""


class MoveIn(Schema):
    to: str
    message: str = ""


class PublishIn(Schema):
    revision: int | None = None


class PublishOut(Schema):
    path: str
    published_revision: int | None
    pending_approval: bool


class PreviewIn(Schema):
    path: str = "preview"
    title: str | None = None
    body: str


class PreviewOut(Schema):
    html: str
    title: str
    errors: list[dict[str, Any]]
    warnings: list[dict[str, Any]]


class SettingsIO(Schema):
    require_approval: bool = False
    front_matter_schema: dict[str, Any] | None = None
    max_body_bytes: int = 512 * 1024


class SnapshotIn(Schema):
    name: str
    description: str = ""
    prefix: str | None = None


class SnapshotOut(Schema):
    name: str
    description: str
    created_at: datetime
    created_by: str | None
    documents: int


class SnapshotEntryOut(Schema):
    path: str
    revision: int
    title: str


class SnapshotDetail(SnapshotOut):
    entries: list[SnapshotEntryOut]


class SnapshotChangeOut(Schema):
    path: str
    status: str
    current_path: str | None
    snapshot_revision: int | None
    current_revision: int | None
    diff: str


class SearchParams(Schema):
    q: str = ""
    # docs, logs, prompts, runs: comma-separated (`in` is a Python keyword)
    in_: str = Field("docs", alias="in")
    tag: str | None = None
    prefix: str | None = None
    author: str | None = None
    since: datetime | None = None
    limit: int = 20
    offset: int = 0


class SearchHitOut(Schema):
    kind: str  # doc, log, prompt, run
    url: str
    path: str | None  # doc
    title: str
    title_html: str
    snippet: str
    rank: float
    tags: list[str]
    updated_at: datetime | None
    build: int | None = None  # log
    task: str | None = None  # log
    attempt: int | None = None  # log
    prompt: str | None = None  # prompt; run (the reference it was run by)
    version: int | None = None  # prompt
    run: int | None = None  # run


class SearchOut(Schema):
    results: list[SearchHitOut]


class LinkReportOut(Schema):
    reason: str
    created_at: datetime
    broken: list[dict[str, Any]]
    newly_broken: list[dict[str, Any]]


# --- helpers --------------------------------------------------------------------------


def _name(user) -> str | None:
    return user.username if user is not None else None


def _save_out(result: services.SaveResult) -> dict:
    return {
        "path": result.document.path,
        "revision": result.revision.number,
        "created": result.created,
        "warnings": result.warnings,
        "published": result.published,
        "pending_approval": result.pending_approval,
    }


def _revision_out(rev) -> dict:
    return {
        "number": rev.number,
        "parent": rev.number - 1 if rev.parent_id else None,
        "title": rev.title,
        "author": _name(rev.author),
        "message": rev.message,
        "created_at": rev.created_at,
        "warnings": rev.warnings,
        "provenance": selectors.provenance_of(rev),
    }


def _snapshot_out(snapshot, with_entries: bool = False) -> dict:
    entries = list(snapshot.entries.select_related("revision"))
    data = {
        "name": snapshot.name,
        "description": snapshot.description,
        "created_at": snapshot.created_at,
        "created_by": _name(snapshot.created_by),
        "documents": len(entries),
    }
    if with_entries:
        data["entries"] = [
            {"path": e.path, "revision": e.revision.number, "title": e.revision.title}
            for e in entries
        ]
    return data


# --- project-level routes (before the catch-all document routes) ----------------------


@router.get("/{slug}/docs", response=list[DocumentListItem])
def list_documents(request, slug: str, prefix: str | None = None):
    project = get_project(user=request.user, slug=slug)
    return [
        {
            "path": d.path,
            "title": d.title,
            "revision": d.current_revision.number if d.current_revision else None,
            "published_revision": d.published_revision.number if d.published_revision else None,
            "tags": d.tags,
            "updated_at": d.updated_at,
            "updated_by": _name(d.updated_by),
        }
        for d in selectors.list_documents(project=project, prefix=prefix).select_related(
            "current_revision", "published_revision"
        )
    ]


@router.post("/{slug}/docs/-/preview", response=PreviewOut)
def preview(request, slug: str, body: PreviewIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    result = selectors.preview(project=project, path=body.path, title=body.title, body=body.body)
    return {
        "html": result.html,
        "title": result.result.title,
        "errors": [p.as_dict() for p in result.result.errors],
        "warnings": [p.as_dict() for p in result.result.warnings],
    }


@router.get("/{slug}/docs/-/settings", response=SettingsIO)
def get_settings(request, slug: str):
    project = get_project(user=request.user, slug=slug)
    s = selectors.doc_settings(project)
    return {
        "require_approval": s.require_approval,
        "front_matter_schema": s.front_matter_schema,
        "max_body_bytes": s.max_body_bytes,
    }


@router.put("/{slug}/docs/-/settings", response=SettingsIO)
def put_settings(request, slug: str, body: SettingsIO):
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    services.update_doc_settings(
        user=request.user,
        project=project,
        require_approval=body.require_approval,
        front_matter_schema=body.front_matter_schema,
        max_body_bytes=body.max_body_bytes,
    )
    return get_settings(request, slug)


@router.get("/{slug}/docs/-/link-reports", response=list[LinkReportOut])
def list_link_reports(request, slug: str):
    project = get_project(user=request.user, slug=slug)
    return list(selectors.link_reports(project)[:20])


@router.get("/{slug}/search", response=SearchOut)
def search(request, slug: str, params: Query[SearchParams]):
    project = get_project(user=request.user, slug=slug)
    results = search_selectors.search(
        project=project,
        q=params.q,
        kinds=search_selectors.parse_kinds(params.in_),
        tag=params.tag,
        prefix=params.prefix,
        author=params.author,
        since=params.since,
        limit=params.limit,
        offset=params.offset,
    )
    return {"results": [result.__dict__ for result in results]}


@router.get("/{slug}/snapshots", response=list[SnapshotOut])
def list_snapshots(request, slug: str):
    project = get_project(user=request.user, slug=slug)
    return [_snapshot_out(s) for s in selectors.snapshots_of(project)]


@router.post("/{slug}/snapshots", response={201: SnapshotDetail})
def create_snapshot(request, slug: str, body: SnapshotIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    snapshot = services.create_snapshot(
        user=request.user,
        project=project,
        name=body.name,
        description=body.description,
        prefix=body.prefix,
    )
    return Status(201, _snapshot_out(snapshot, with_entries=True))


@router.get("/{slug}/snapshots/{name}", response=SnapshotDetail)
def snapshot_detail(request, slug: str, name: str):
    project = get_project(user=request.user, slug=slug)
    return _snapshot_out(selectors.get_snapshot(project=project, name=name), with_entries=True)


@router.delete("/{slug}/snapshots/{name}", response={204: None})
def delete_snapshot(request, slug: str, name: str):
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    services.delete_snapshot(user=request.user, project=project, name=name)
    return Status(204, None)


@router.get("/{slug}/snapshots/{name}/diff", response=list[SnapshotChangeOut])
def snapshot_diff(request, slug: str, name: str):
    project = get_project(user=request.user, slug=slug)
    snapshot = selectors.get_snapshot(project=project, name=name)
    return [c.__dict__ for c in selectors.snapshot_changes(snapshot)]


@router.get("/{slug}/snapshots/{name}/docs/{path:path}", response=RevisionDetail)
def snapshot_document(request, slug: str, name: str, path: str):
    project = get_project(user=request.user, slug=slug)
    entry = selectors.snapshot_entry(selectors.get_snapshot(project=project, name=name), path)
    rev = entry.revision
    return {
        **_revision_out(rev),
        "body": rev.body,
        "html": selectors.rendered_html(rev, project),
        "tags": rev.tags,
        "front_matter": rev.front_matter,
    }


# --- document sub-resources (before the bare document path) ---------------------------


@router.get("/{slug}/docs/{path:path}/-/revisions", response=list[RevisionOut])
def list_revisions(request, slug: str, path: str):
    project = get_project(user=request.user, slug=slug)
    document, _ = selectors.find_document(project=project, path=path)
    return [_revision_out(r) for r in selectors.revisions_of(document)]


@router.get("/{slug}/docs/{path:path}/-/revisions/{int:number}", response=RevisionDetail)
def revision_detail(request, slug: str, path: str, number: int):
    project = get_project(user=request.user, slug=slug)
    document, _ = selectors.find_document(project=project, path=path)
    rev = selectors.revision_of(document, number)
    return {
        **_revision_out(rev),
        "body": rev.body,
        "html": selectors.rendered_html(rev, project),
        "tags": rev.tags,
        "front_matter": rev.front_matter,
    }


@router.get("/{slug}/docs/{path:path}/-/diff", response=DiffOut, by_alias=True)
def diff(request, slug: str, path: str, from_: int = Query(..., alias="from"), to: int = 0):
    project = get_project(user=request.user, slug=slug)
    document, _ = selectors.find_document(project=project, path=path)
    to = to or document.current_revision.number
    result = selectors.diff_revisions(document, from_, to)
    return {"from": from_, "to": to, "diff": result.unified}


@router.post("/{slug}/docs/{path:path}/-/restore", response=SaveOut)
def restore(request, slug: str, path: str, body: RestoreIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    result = services.restore_revision(
        user=request.user, project=project, path=path, revision=body.revision, message=body.message
    )
    return _save_out(result)


@router.post("/{slug}/docs/{path:path}/-/move", response={200: dict})
def move(request, slug: str, path: str, body: MoveIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    document = services.move_document(
        user=request.user, project=project, path=path, new_path=body.to, message=body.message
    )
    return {"path": document.path, "redirect_from": selectors.redirects_to(document)}


@router.post("/{slug}/docs/{path:path}/-/publish", response=PublishOut)
def publish(request, slug: str, path: str, body: PublishIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    _, pending = services.publish_document(
        user=request.user, project=project, path=path, revision=body.revision
    )
    return _publish_out(project, path, pending)


@router.post("/{slug}/docs/{path:path}/-/approve", response=PublishOut)
def approve(request, slug: str, path: str, body: PublishIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    services.approve_publication(
        user=request.user, project=project, path=path, revision=body.revision
    )
    return _publish_out(project, path, False)


def _publish_out(project, path: str, pending: bool) -> dict:
    document, _ = selectors.find_document(project=project, path=path)
    document.refresh_from_db()
    published = document.published_revision
    return {
        "path": document.path,
        "published_revision": published.number if published else None,
        "pending_approval": pending,
    }


# --- the document itself --------------------------------------------------------------


@router.get("/{slug}/docs/{path:path}", response=DocumentOut)
def get_document(
    request, slug: str, path: str, revision: int | None = None, published: bool = False
):
    project = get_project(user=request.user, slug=slug)
    document, redirected_from = selectors.find_document(project=project, path=path)
    rev = selectors.revision_of(document, revision, published=published)
    return {
        "path": document.path,
        "title": rev.title,
        "body": rev.body,
        "html": selectors.rendered_html(rev, project),
        "revision": rev.number,
        "tags": rev.tags,
        "front_matter": rev.front_matter,
        "warnings": rev.warnings,
        "published_revision": (
            document.published_revision.number if document.published_revision_id else None
        ),
        "redirected_from": redirected_from,
        "updated_at": rev.created_at,
        "author": _name(rev.author),
        "provenance": selectors.provenance_of(rev),
    }


@router.put("/{slug}/docs/{path:path}", response=SaveOut)
def put_document(request, slug: str, path: str, body: DocumentIn):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    result = services.save_document(
        user=request.user,
        project=project,
        path=path,
        title=body.title,
        body=body.body,
        message=body.message,
        base_revision=body.base_revision,
        tags=body.tags,
        publish=body.publish,
    )
    return _save_out(result)


@router.delete("/{slug}/docs/{path:path}", response={204: None})
def delete_document(request, slug: str, path: str):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    services.delete_document(user=request.user, project=project, path=path)
    return Status(204, None)
