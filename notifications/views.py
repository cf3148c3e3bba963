"""The notifications page, /p/<slug>/notifications/ (maintainers): targets, adding,
enabling, sending a test, deleting, and each target's recent deliveries with redeliver."""

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
from .models import EVENTS

require_http_methods: Callable[[list[str]], Callable[[View], View]] = (
    http_decorators.require_http_methods
)
TEMPLATE = "notifications/notifications.html"
DELIVERIES_SHOWN = 10


@page
@require_http_methods(["GET", "POST"])
def notifications(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug, role=Role.MAINTAINER)
    if request.method != "POST":
        return render(request, TEMPLATE, _context(request, project))
    action = request.POST.get("action", "")
    try:
        if action == "add":
            kind = request.POST.get("kind", "")
            address = request.POST.get("address", "").strip()
            target = services.create_target(
                user=request.user,
                project=project,
                name=request.POST.get("name", ""),
                kind=kind,
                url=address if kind != "email" else "",
                emails=address.replace(",", " ").split() if kind == "email" else [],
                secret=request.POST.get("secret", "") or None,
                events=request.POST.getlist("events"),
                pipelines=request.POST.get("pipelines", "").split(),
                branches=request.POST.get("branches", "").split(),
            )
            messages.success(request, f"Added {target.name}; send it a test message.")
            return redirect("notifications", slug=slug)
        target = selectors.get_target(project=project, target_id=_int(request.POST.get("id")))
        if action == "test":
            services.send_test(user=request.user, target=target)
            messages.success(request, f"Test message queued for {target.name}.")
        elif action in ("enable", "disable"):
            services.update_target(user=request.user, target=target, enabled=action == "enable")
        elif action == "delete":
            services.delete_target(user=request.user, target=target)
            messages.success(request, f"Removed {target.name}.")
        elif action == "redeliver":
            delivery = selectors.get_delivery(
                target=target, delivery_id=_int(request.POST.get("delivery"))
            )
            services.redeliver(user=request.user, delivery=delivery)
            messages.success(request, f"Redelivery of {delivery.event_name} queued.")
    except DomainError as exc:
        context = _context(request, project, problems=problem_messages(exc), form=request.POST)
        return render(request, TEMPLATE, context, status=exc.status)
    return redirect("notifications", slug=slug)


def _int(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        return 0  # no such row: the selector answers 404


def _context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    rows = [
        (
            t,
            services.display_url(t.kind, t.url),
            selectors.deliveries_of(target=t, limit=DELIVERIES_SHOWN),
        )
        for t in selectors.targets_of(project=project)
    ]
    form = extra.get("form")
    chosen = form.getlist("events") if form is not None else ["build.failed", "build.fixed"]
    return project_context(
        request, project, here="notifications", targets=rows, events=EVENTS, chosen=chosen, **extra
    )
