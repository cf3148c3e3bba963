"""Documentation pages: parse the request, call a selector or service, render.

Domain errors become messages on the page (or a 404/403 through `page_errors`), never
a 500. The editor posts a normal form; its live preview calls the JSON preview endpoint.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_POST

from buildsite.errors import DomainError, Forbidden, InvalidInput, NotFound
from buildsite.pages import page, project_context
from buildsite.roles import Role
from buildsite.selectors import get_project
from search import selectors as search_selectors

from . import selectors, services


def _reader(slug: str, path: str) -> str:
    return reverse("docs-reader", kwargs={"slug": slug, "path": path})


@page
def tree(request, slug):
    project = get_project(user=request.user, slug=slug)
    reports = selectors.link_reports(project)[:1]
    return render(
        request,
        "docs_engine/tree.html",
        project_context(
            request,
            project,
            nodes=selectors.document_tree(project),
            report=reports[0] if reports else None,
        ),
    )


@page
def reader(request, slug, path):
    project = get_project(user=request.user, slug=slug)
    document, redirected_from = selectors.find_document(project=project, path=path)
    if redirected_from:
        messages.info(request, f"'{redirected_from}' moved to '{document.path}'.")
        return redirect(_reader(slug, document.path))
    number = request.GET.get("revision", "")
    revision = selectors.revision_of(
        document,
        int(number) if number.isdigit() else None,
        published=request.GET.get("version") == "published",
    )
    return render(
        request,
        "docs_engine/reader.html",
        project_context(
            request,
            project,
            document=document,
            revision=revision,
            html=selectors.rendered_html(revision, project),
            pending=selectors.pending_publication(document),
            redirects=selectors.redirects_to(document),
            front_matter=json.dumps(revision.front_matter, indent=2)
            if revision.front_matter
            else "",
        ),
    )


def _editor(request, project, *, path, document, form, problems=None, conflict=None):
    return render(
        request,
        "docs_engine/editor.html",
        project_context(
            request,
            project,
            path=path,
            document=document,
            form=form,
            problems=problems or [],
            conflict=conflict,
            preview_url=f"/api/projects/{project.slug}/docs/-/preview",
        ),
        status=422 if problems else (409 if conflict else 200),
    )


def _save_from_form(request, project, path, document):
    form = {
        "title": request.POST.get("title", ""),
        "body": request.POST.get("body", "").replace("\r\n", "\n"),
        "message": request.POST.get("message", ""),
        "tags": request.POST.get("tags", ""),
        "base_revision": request.POST.get("base_revision", ""),
    }
    base = form["base_revision"]
    try:
        result = services.save_document(
            user=request.user,
            project=project,
            path=path,
            title=form["title"],
            body=form["body"],
            message=form["message"],
            base_revision=int(base) if base.isdigit() else None,
            tags=[t.strip() for t in form["tags"].split(",") if t.strip()],
            publish=request.POST.get("publish") == "on",
        )
    except InvalidInput as exc:
        return _editor(
            request, project, path=path, document=document, form=form, problems=exc.problems
        )
    except DomainError as exc:
        if exc.status != 409:
            raise
        return _editor(request, project, path=path, document=document, form=form, conflict=exc)
    if not result.created:
        messages.info(request, "Nothing changed: no new revision was written.")
    elif result.pending_approval:
        messages.info(request, "Saved; publication waits for a second editor's approval.")
    else:
        messages.success(request, f"Saved revision {result.revision.number}.")
    return redirect(_reader(project.slug, result.document.path))


@page
def new_document(request, slug):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    path = (request.POST.get("path") or request.GET.get("path") or "").strip().strip("/")
    if request.method == "POST" and "body" in request.POST:
        try:
            from .paths import clean_path

            path = clean_path(path)
        except InvalidInput as exc:
            form = {**request.POST.dict(), "base_revision": ""}
            return _editor(
                request, project, path=path, document=None, form=form, problems=exc.problems
            )
        return _save_from_form(request, project, path, None)
    form = {"title": "", "body": "", "message": "Create", "tags": "", "base_revision": ""}
    return _editor(request, project, path=path, document=None, form=form)


@page
def edit(request, slug, path):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    document, _ = selectors.find_document(project=project, path=path)
    if request.method == "POST":
        return _save_from_form(request, project, document.path, document)
    revision = document.current_revision
    form = {
        "title": revision.title,
        "body": revision.body,
        "message": "",
        "tags": ", ".join(revision.tags),
        "base_revision": str(revision.number),
    }
    return _editor(request, project, path=document.path, document=document, form=form)


@page
def history(request, slug, path):
    project = get_project(user=request.user, slug=slug)
    document, _ = selectors.find_document(project=project, path=path)
    return render(
        request,
        "docs_engine/history.html",
        project_context(
            request,
            project,
            document=document,
            revisions=selectors.revisions_of(document),
            redirects=selectors.redirects_to(document),
        ),
    )


@page
def diff(request, slug, path):
    project = get_project(user=request.user, slug=slug)
    document, _ = selectors.find_document(project=project, path=path)
    current = document.current_revision.number
    to = int(request.GET["to"]) if request.GET.get("to", "").isdigit() else current
    default_from = max(1, to - 1)
    frm = int(request.GET["from"]) if request.GET.get("from", "").isdigit() else default_from
    result = selectors.diff_revisions(document, frm, to)
    return render(
        request,
        "docs_engine/diff.html",
        project_context(
            request,
            project,
            document=document,
            diff=result,
            numbers=list(range(current, 0, -1)),
        ),
    )


@page
@require_POST
def restore(request, slug, path):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    number = request.POST.get("revision", "")
    try:
        result = services.restore_revision(
            user=request.user,
            project=project,
            path=path,
            revision=int(number) if number.isdigit() else 0,
        )
        messages.success(request, f"Restored as revision {result.revision.number}.")
    except InvalidInput as exc:
        messages.error(request, "Cannot restore: " + "; ".join(str(p) for p in exc.problems))
    return redirect("docs-history", slug=slug, path=path)


@page
def move(request, slug, path):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    document, _ = selectors.find_document(project=project, path=path)
    if request.method == "POST":
        try:
            document = services.move_document(
                user=request.user,
                project=project,
                path=document.path,
                new_path=request.POST.get("to", ""),
            )
            messages.success(request, f"Moved; '{path}' now redirects here.")
            return redirect(_reader(slug, document.path))
        except DomainError as exc:
            messages.error(request, exc.message)
    return render(
        request, "docs_engine/move.html", project_context(request, project, document=document)
    )


@page
@require_POST
def delete(request, slug, path):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    services.delete_document(user=request.user, project=project, path=path)
    messages.success(request, f"Deleted '{path}'. The link checker will report broken links.")
    return redirect("docs-tree", slug=slug)


@page
@require_POST
def publish(request, slug, path):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    number = request.POST.get("revision", "")
    published, pending = services.publish_document(
        user=request.user,
        project=project,
        path=path,
        revision=int(number) if number.isdigit() else None,
    )
    if pending:
        messages.info(request, "Publication requested: another editor has to approve it.")
    else:
        messages.success(request, "Published.")
    return redirect(_reader(slug, path))


@page
@require_POST
def approve(request, slug, path):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    revision = services.approve_publication(user=request.user, project=project, path=path)
    messages.success(request, f"Approved: revision {revision.number} is published.")
    return redirect(_reader(slug, path))


SEARCH_LABELS = {
    "docs": "Documents",
    "logs": "Task logs",
    "prompts": "Prompts",
    "runs": "Prompt runs",
}


@page
def search(request, slug):
    """One search box over documents, task logs, prompts and runs (`in`, checkboxes),
    results grouped by kind; documents alone by default, as the page always searched."""
    project = get_project(user=request.user, slug=slug)
    since = parse_date(request.GET.get("since", "") or "") if request.GET.get("since") else None
    params = {
        "q": request.GET.get("q", ""),
        "tag": request.GET.get("tag") or None,
        "prefix": request.GET.get("prefix") or None,
        "author": request.GET.get("author") or None,
    }
    asked = any(params.values()) or since
    groups, problems, kinds = [], [], ("docs",)
    try:
        kinds = search_selectors.parse_kinds(",".join(request.GET.getlist("in")))
    except InvalidInput as exc:
        problems = [str(p) for p in exc.problems]
    if asked and not problems:
        from datetime import datetime, time

        from django.utils import timezone

        since_dt = (
            timezone.make_aware(datetime.combine(since, time.min)) if since is not None else None
        )
        for kind in kinds:
            results = search_selectors.search(
                project=project, kinds=(kind,), since=since_dt,
                limit=50 if kind == "docs" else 20, **params,
            )  # fmt: skip
            groups.append({"kind": kind, "label": SEARCH_LABELS[kind], "results": results})
    return render(
        request,
        "docs_engine/search.html",
        project_context(
            request,
            project,
            groups=groups,
            asked=asked,
            problems=problems,
            kinds=[(k, SEARCH_LABELS[k], k in kinds) for k in search_selectors.KINDS],
            params={**params, "since": request.GET.get("since", "")},
        ),
        status=422 if problems else 200,
    )


@page
def snapshot_list(request, slug):
    project = get_project(user=request.user, slug=slug)
    if request.method == "POST":
        try:
            snapshot = services.create_snapshot(
                user=request.user,
                project=project,
                name=request.POST.get("name", ""),
                description=request.POST.get("description", ""),
                prefix=request.POST.get("prefix") or None,
            )
            messages.success(request, f"Snapshot '{snapshot.name}' created.")
            return redirect("docs-snapshot", slug=slug, name=snapshot.name)
        except (InvalidInput, DomainError) as exc:
            if isinstance(exc, Forbidden | NotFound):
                raise
            messages.error(request, exc.message)
    return render(
        request,
        "docs_engine/snapshots.html",
        project_context(request, project, snapshots=selectors.snapshots_of(project)),
    )


@page
def snapshot_detail(request, slug, name):
    project = get_project(user=request.user, slug=slug)
    snapshot = selectors.get_snapshot(project=project, name=name)
    return render(
        request,
        "docs_engine/snapshot.html",
        project_context(
            request,
            project,
            snapshot=snapshot,
            changes=selectors.snapshot_changes(snapshot),
        ),
    )


@page
def snapshot_document(request, slug, name, path):
    project = get_project(user=request.user, slug=slug)
    snapshot = selectors.get_snapshot(project=project, name=name)
    entry = selectors.snapshot_entry(snapshot, path)
    return render(
        request,
        "docs_engine/snapshot_document.html",
        project_context(
            request,
            project,
            snapshot=snapshot,
            entry=entry,
            html=selectors.rendered_html(entry.revision, project),
        ),
    )


@page
def settings_page(request, slug):
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    current = selectors.doc_settings(project)
    schema_text = (
        json.dumps(current.front_matter_schema, indent=2) if current.front_matter_schema else ""
    )
    if request.method == "POST":
        schema_text = request.POST.get("front_matter_schema", "").strip()
        try:
            schema = json.loads(schema_text) if schema_text else None
            services.update_doc_settings(
                user=request.user,
                project=project,
                require_approval=request.POST.get("require_approval") == "on",
                front_matter_schema=schema,
                max_body_bytes=int(request.POST.get("max_body_bytes") or 0),
            )
            messages.success(request, "Settings saved.")
            return redirect("docs-settings", slug=slug)
        except json.JSONDecodeError as exc:
            messages.error(request, f"The schema is not valid JSON: {exc}")
        except ValueError:
            messages.error(request, "The size limit must be a number of bytes.")
        except InvalidInput as exc:
            messages.error(request, exc.message)
    return render(
        request,
        "docs_engine/settings.html",
        project_context(request, project, settings=current, schema_text=schema_text),
    )
