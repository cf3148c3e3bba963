"""Server-rendered pages: parse the request, call a selector or service, render.

Live updates come over the WebSocket (tasks.consumers); pages embed the id of the
newest event they reflect so the browser asks the socket for everything after it.
"""

import json
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators import http as http_decorators

from buildsite.errors import DomainError, InvalidInput
from buildsite.models import Project
from buildsite.pages import View, page, project_context
from buildsite.roles import Role
from buildsite.selectors import get_project, projects_for
from schedules.selectors import pipeline_schedules
from tasks.states import TERMINAL, BuildState, TaskState

from . import health, rerun, selectors, services, stats
from .definition import parse_definition
from .models import Build
from .sections import build_sections

# Django is untyped here (Any); these keep the view they wrap callable the same way.
require_GET: Callable[[View], View] = http_decorators.require_GET
require_POST: Callable[[View], View] = http_decorators.require_POST

BUILD_STATES = [s.value for s in BuildState]
HEALTH_DAYS = 30  # the pipeline page's "Health" window
NEW_PIPELINE = """tasks:
  hello:
    steps:
      - run: echo "hello from buildsite"
"""


def wants_json(request: HttpRequest) -> bool:
    requested_with: str | None = request.headers.get("x-requested-with")
    return requested_with == "fetch"


@page
def home(request: HttpRequest) -> HttpResponse:
    projects = list(projects_for(user=request.user))
    if len(projects) == 1:
        return redirect("project", slug=projects[0].slug)
    return render(request, "builds/home.html", {"projects": projects})


@page
def project_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    context = project_context(
        request,
        project,
        running=selectors.running_builds(project=project)[:20],
        builds=selectors.builds_of(project=project)[:15],
        failures=selectors.recent_failures(project=project),
        pools=selectors.pool_usage(project=project),
        pipelines=selectors.pipelines_of(project=project),
        after=selectors.latest_event_id(project=project),
    )
    if request.GET.get("fragment") == "live":
        return render(request, "builds/_dashboard_live.html", context)
    return render(request, "builds/project.html", context)


# --- pipelines --------------------------------------------------------------------------
@page
def pipeline_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    return render(
        request,
        "builds/pipelines.html",
        project_context(request, project, rows=stats.pipeline_rows(project=project)),
    )


@page
def pipeline_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    history = selectors.pipeline_history(project=project, name=name)
    number = _int(request.GET.get("version"))
    version = next((v for v in history if v.number == number), history[0])
    report = stats.pipeline_stats(project=project, pipeline=name, days=HEALTH_DAYS)
    return render(
        request,
        "builds/pipeline.html",
        project_context(
            request,
            project,
            name=name,
            version=version,
            latest=history[0],
            history=history,
            definition=version.definition,
            problems=[],
            builds=selectors.builds_of(project=project, pipeline=name)[:10],
            schedules=pipeline_schedules(project=project, pipeline=name),
            health=report,
            health_chart=health.chart(report["daily"]),
        ),
    )


@page
@require_POST
def save_pipeline(request: HttpRequest, slug: str, name: str | None = None) -> HttpResponse:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    name = name or request.POST.get("name", "").strip()
    definition = request.POST.get("definition", "").replace("\r\n", "\n")
    try:
        version = services.save_pipeline(
            user=request.user, project=project, name=name, definition=definition
        )
    except InvalidInput as exc:
        context = project_context(
            request,
            project,
            name=name,
            definition=definition,
            problems=[p.as_dict() for p in exc.problems],
        )
        if name and _exists(project, name):
            history = selectors.pipeline_history(project=project, name=name)
            context.update(version=history[0], latest=history[0], history=history)
            return render(request, "builds/pipeline.html", context, status=422)
        return render(request, "builds/pipeline_new.html", context, status=422)
    messages.success(request, f"Saved {name} v{version.number}.")
    return redirect("pipeline", slug=slug, name=name)


@page
def new_pipeline(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    return render(
        request,
        "builds/pipeline_new.html",
        project_context(request, project, name="", definition=NEW_PIPELINE, problems=[]),
    )


@page
@require_POST
def check_pipeline(request: HttpRequest, slug: str) -> HttpResponse:
    """Syntax check for the editor: the same validation a save runs, nothing stored."""
    get_project(user=request.user, slug=slug)
    try:
        body = json.loads(request.body or b"{}")
        definition = body.get("definition", "") if isinstance(body, dict) else ""
    except json.JSONDecodeError:
        return JsonResponse({"ok": False, "problems": [{"msg": "body must be JSON"}]}, status=400)
    if not isinstance(definition, str):
        return JsonResponse({"ok": False, "problems": [{"msg": "definition must be text"}]})
    try:
        spec = parse_definition(definition)
    except InvalidInput as exc:
        return JsonResponse({"ok": False, "problems": [p.as_dict() for p in exc.problems]})
    return JsonResponse({"ok": True, "problems": [], "tasks": list(spec["tasks"])})


@page
@require_GET
def pipeline_diff(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    history = selectors.pipeline_history(project=project, name=name)
    by_number = {v.number: v for v in history}
    new = by_number.get(_int(request.GET.get("b")) or history[0].number, history[0])
    old = by_number.get(_int(request.GET.get("a")) or new.number - 1)
    if old is None:
        old = history[-1]
    lines = selectors.definition_diff(
        old.definition, new.definition, old_label=f"v{old.number}", new_label=f"v{new.number}"
    )
    return render(
        request,
        "builds/pipeline_diff.html",
        project_context(
            request, project, name=name, old=old, new=new, lines=lines, history=history
        ),
    )


@page
@require_POST
def run_pipeline(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    params = {k[6:]: v for k, v in request.POST.items() if k.startswith("param:")}
    try:
        build = services.trigger_build(
            user=request.user, project=project, pipeline=name, params=params
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("pipeline", slug=slug, name=name)
    return redirect("build", build_id=build.id)


# --- builds -----------------------------------------------------------------------------
@page
def build_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    filters = {
        "pipeline": request.GET.get("pipeline") or None,
        "state": request.GET.get("state") or None,
        "triggered_by": request.GET.get("triggered_by") or None,
    }
    qs = selectors.builds_of(project=project, **filters)
    builds = Paginator(qs, 50).get_page(request.GET.get("page"))
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(
        request,
        "builds/builds.html",
        project_context(
            request,
            project,
            builds=builds,
            filters=filters,
            query=query,
            states=BUILD_STATES,
            pipeline_names=[p.name for p, _ in selectors.pipelines_of(project=project)],
            triggerers=selectors.triggerers_of(project=project),
        ),
    )


@page
def build_detail(request: HttpRequest, build_id: int) -> HttpResponse:
    build = selectors.get_build(user=request.user, build_id=build_id)
    snapshot = selectors.build_snapshot(build=build)
    tasks = snapshot["tasks"]
    return render(
        request,
        "builds/build.html",
        project_context(
            request,
            build.project,
            build=build,
            snapshot=snapshot,
            tasks=tasks,
            layout=snapshot["layout"],
            states=[s.value for s in TaskState],
            counts=snapshot["counts"],
            done=sum(1 for t in tasks if t["state"] in TERMINAL),
            params_json=json.dumps(build.params, indent=2),
            sections=build_sections(request=request, build=build),
        ),
    )


@page
@require_GET
def task_log(request: HttpRequest, build_id: int, name: str) -> HttpResponse:
    """The task's log up to event `upto` (what the page's socket will not resend)."""
    build = selectors.get_build(user=request.user, build_id=build_id)
    upto = _int(request.GET.get("upto")) or 0
    text, truncated = selectors.task_log_upto(build=build, name=name, upto=upto)
    return JsonResponse({"task": name, "upto": upto, "text": text, "truncated": truncated})


@page
@require_POST
def cancel_build(request: HttpRequest, build_id: int) -> HttpResponse:
    build = selectors.get_build(user=request.user, build_id=build_id, role=Role.EDITOR)
    return _build_action(request, build, services.cancel_build)


@page
@require_POST
def retry_build(request: HttpRequest, build_id: int) -> HttpResponse:
    build = selectors.get_build(user=request.user, build_id=build_id, role=Role.EDITOR)
    return _build_action(request, build, services.retry_build)


@page
@require_POST
def rerun_build(request: HttpRequest, build_id: int) -> HttpResponse:
    """The task panel's "Re-run from here": on to the new build, or back with why not."""
    build = selectors.get_build(user=request.user, build_id=build_id, role=Role.EDITOR)
    from_task = request.POST.get("from", "")
    try:
        new = rerun.rerun_build(user=request.user, build=build, from_task=from_task)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("build", build_id=build.id)
    messages.success(request, f"Re-running build #{build.id} from {from_task}.")
    return redirect("build", build_id=new.id)


class BuildAction(Protocol):
    """services.cancel_build / services.retry_build."""

    def __call__(self, *, user: Any, build: Build) -> Build: ...


def _build_action(request: HttpRequest, build: Build, action: BuildAction) -> HttpResponse:
    try:
        build = action(user=request.user, build=build)
    except DomainError as exc:
        if wants_json(request):
            return JsonResponse({"detail": exc.message}, status=exc.status)
        messages.error(request, exc.message)
        return redirect("build", build_id=build.id)
    if wants_json(request):
        return JsonResponse({"id": build.id, "state": build.state})
    return redirect("build", build_id=build.id)


# --- resources --------------------------------------------------------------------------
@page
def resources(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_project(user=request.user, slug=slug)
    hours = min(max(_int(request.GET.get("hours")) or 6, 1), 24 * 14)
    report = selectors.resource_report(project=project, hours=hours)
    return render(
        request,
        "builds/resources.html",
        project_context(request, project, report=report, hours=hours),
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _exists(project: Project, name: str) -> bool:
    return any(p.name == name for p, _ in selectors.pipelines_of(project=project))
