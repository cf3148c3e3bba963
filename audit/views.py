"""The audit page, /p/<slug>/audit/: who changed what in the project, newest first,
filtered by actor, action and time (maintainers only, like the API)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators import http as http_decorators

from buildsite.errors import InvalidInput
from buildsite.pages import View, page, problem_messages, project_context
from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors

PAGE_SIZE = 50
require_GET: Callable[[View], View] = http_decorators.require_GET


@page
@require_GET
def audit_log(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    filters = {key: request.GET.get(key, "").strip() for key in ("actor", "action", "since")}
    try:
        number = max(1, min(int(request.GET.get("page") or 1), selectors.MAX_OFFSET // PAGE_SIZE))
    except ValueError:
        number = 1
    status, problems = 200, []
    try:
        rows, count = selectors.audit_entries(
            project=project, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE, **filters
        )
    except InvalidInput as exc:
        rows, count, status, problems = [], 0, exc.status, problem_messages(exc)
    pages = max(1, -(-count // PAGE_SIZE))
    context = project_context(
        request,
        project,
        entries=rows,
        count=count,
        filters=filters,
        problems=problems,
        query=urlencode({k: v for k, v in filters.items() if v}),
        number=number,
        pages=pages,
        previous=number - 1 if number > 1 else None,
        next=number + 1 if number < pages else None,
    )
    return render(request, "audit/audit.html", context, status=status)
