"""The secrets page, /p/<slug>/secrets/: names, versions and who set them for editors;
set and delete for maintainers. A value goes in through the form and is never put
back into a page, not even into the form after an error."""

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
from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors, services
from .rules import MAX_VALUE_BYTES, MIN_VALUE_CHARS, NAME_RULE

require_http_methods: Callable[[list[str]], Callable[[View], View]] = (
    http_decorators.require_http_methods
)


@page
@require_http_methods(["GET", "POST"])
def secrets(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    if request.method == "POST":
        get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
        name = request.POST.get("name", "").strip()
        try:
            if request.POST.get("action") == "delete":
                services.delete_secret(user=request.user, project=project, name=name)
                messages.success(request, f"Deleted secret {name}.")
            else:
                # Browsers send a textarea's line breaks as CRLF; a key file has LF.
                value = request.POST.get("value", "").replace("\r\n", "\n")
                secret = services.set_secret(
                    user=request.user, project=project, name=name, value=value
                )
                messages.success(request, f"Saved secret {name} (version {secret.version}).")
        except DomainError as exc:
            context = _context(request, project, problems=problem_messages(exc), name=name)
            return render(request, "vault/secrets.html", context, status=exc.status)
        return redirect("secrets", slug=slug)
    return render(request, "vault/secrets.html", _context(request, project))


def _context(request: HttpRequest, project: Project, **extra: object) -> dict[str, Any]:
    return project_context(
        request,
        project,
        secrets=selectors.secrets_of(user=request.user, project=project),
        name_rule=NAME_RULE,
        min_chars=MIN_VALUE_CHARS,
        max_kib=MAX_VALUE_BYTES // 1024,
        **extra,
    )
