"""Pipeline badges: an SVG of the state of a pipeline's latest build, for a README.

Viewers of the project may fetch them; anyone may when a maintainer made the project's
badges public (`PATCH /api/projects/{slug}` `{"public_badges": true}`): a badge tells
a pipeline's state and nothing else.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.html import escape

from buildsite.errors import NotFound
from buildsite.models import Project
from buildsite.selectors import get_project

from .models import Build

COLOURS = {
    "succeeded": ("passing", "#2e7d32"),
    "failed": ("failing", "#c62828"),
    "cancelled": ("cancelled", "#616161"),
    "running": ("running", "#1565c0"),
    "queued": ("queued", "#1565c0"),
}
CHAR_WIDTH = 7  # px per character at 11px Verdana, near enough for short words


def badge_svg(label: str, value: str, colour: str) -> str:
    left, right = 10 + CHAR_WIDTH * len(label), 10 + CHAR_WIDTH * len(value)
    total = left + right
    label, value = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{label}: {value}"><title>{label}: {value}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="5" y="14">{label}</text><text x="{left + 5}" y="14">{value}</text></g></svg>'
    )


def latest_state(*, project: Project, pipeline: str, branch: str = "") -> str | None:
    builds = Build.objects.filter(project=project, pipeline__name=pipeline)
    if branch:
        builds = builds.filter(commit_ref=branch)
    state: str | None = builds.order_by("-id").values_list("state", flat=True).first()
    return state


def badge(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    project = Project.objects.filter(slug=slug).first()
    if project is None or not (project.settings or {}).get("public_badges"):
        try:
            project = get_project(user=request.user, slug=slug)
        except NotFound:
            return HttpResponse("no such badge", status=404, content_type="text/plain")
    state = latest_state(project=project, pipeline=name, branch=request.GET.get("branch", ""))
    value, colour = COLOURS.get(state or "", ("no builds", "#9e9e9e"))
    response = HttpResponse(badge_svg(name[:40], value, colour), content_type="image/svg+xml")
    # Forges' image proxies cache hard; a badge must follow the builds.
    response["Cache-Control"] = "no-cache, max-age=0"
    return response
