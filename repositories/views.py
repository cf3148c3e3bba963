"""The repositories page, /p/<slug>/repositories/: what the project builds, its webhook
URL, and (for maintainers) registering, rotating the webhook secret and removing.
The secret is shown once, on the page that answers the POST that made it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators import http as http_decorators

from buildsite.errors import DomainError
from buildsite.models import Project
from buildsite.pages import View, page, problem_messages, project_context
from buildsite.selectors import get_project

from . import selectors, services

require_http_methods: Callable[[list[str]], Callable[[View], View]] = (
    http_decorators.require_http_methods
)


@page
@require_http_methods(["GET", "POST"])
def repositories(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    if request.method != "POST":
        return render(request, "repositories/repositories.html", _context(request, project))
    action = request.POST.get("action", "")
    try:
        if action == "build":
            repository = selectors.get_repository(project=project, ref=request.POST.get("id", ""))
            build = services.trigger_repository_build(
                user=request.user, repository=repository, ref=request.POST.get("ref") or None
            )
            return redirect("build", build_id=build.id)
        if action == "register":
            branches = request.POST.get("branches", "").split()
            repository, secret = services.create_repository(
                user=request.user,
                project=project,
                name=request.POST.get("name", "").strip(),
                url=request.POST.get("url", "").strip(),
                branch=request.POST.get("branch", "").strip() or "main",
                pipeline_path=request.POST.get("pipeline_path", "").strip() or ".buildsite.yml",
                branches=branches,
                credentials_secret=request.POST.get("credentials_secret", "").strip(),
            )
            return _shown_once(request, project, repository, secret)
        repository = selectors.get_repository(project=project, ref=request.POST.get("id", ""))
        if action == "rotate":
            secret = services.rotate_webhook_secret(user=request.user, repository=repository)
            return _shown_once(request, project, repository, secret)
        if action == "delete":
            services.delete_repository(user=request.user, repository=repository)
            messages.success(request, f"Removed repository {repository.name}; its builds stay.")
    except DomainError as exc:
        context = _context(request, project, problems=problem_messages(exc), form=request.POST)
        return render(request, "repositories/repositories.html", context, status=exc.status)
    return redirect("repositories", slug=slug)


def _shown_once(
    request: HttpRequest, project: Project, repository: Any, secret: str
) -> HttpResponse:
    hook = request.build_absolute_uri(selectors.webhook_path(repository))
    context = _context(request, project, new_secret=secret, new_for=repository, new_hook=hook)
    return render(request, "repositories/repositories.html", context)


def _context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    rows = [
        (r, request.build_absolute_uri(selectors.webhook_path(r)))
        for r in selectors.repositories_of(project=project)
    ]
    return project_context(request, project, here="repositories", repositories=rows, **extra)
