"""Server-rendered pages: parse the request, call a selector or service, render."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from buildsite.errors import DomainError
from buildsite.roles import Role
from buildsite.selectors import get_project, projects_for, role_of
from tasks.dag import layers

from . import selectors, services


@login_required
def home(request):
    projects = list(projects_for(user=request.user))
    if len(projects) == 1:
        return redirect("project", slug=projects[0].slug)
    return render(request, "builds/home.html", {"projects": projects})


@login_required
def project_dashboard(request, slug):
    project = get_project(user=request.user, slug=slug)
    return render(
        request,
        "builds/project.html",
        {
            "project": project,
            "role": role_of(user=request.user, project=project),
            "pipelines": selectors.pipelines_of(project=project),
            "builds": selectors.builds_of(project=project)[:20],
            "pools": selectors.pool_usage(project=project),
        },
    )


@login_required
def pipeline_list(request, slug):
    project = get_project(user=request.user, slug=slug)
    return render(
        request,
        "builds/pipelines.html",
        {
            "project": project,
            "role": role_of(user=request.user, project=project),
            "pipelines": selectors.pipelines_of(project=project),
        },
    )


@login_required
@require_POST
def run_pipeline(request, slug, name):
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    params = {k[6:]: v for k, v in request.POST.items() if k.startswith("param:")}
    try:
        build = services.trigger_build(
            user=request.user, project=project, pipeline=name, params=params
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("pipelines", slug=slug)
    return redirect("build", build_id=build.id)


@login_required
def build_list(request, slug):
    project = get_project(user=request.user, slug=slug)
    qs = selectors.builds_of(
        project=project,
        pipeline=request.GET.get("pipeline") or None,
        state=request.GET.get("state") or None,
    )
    return render(request, "builds/builds.html", {"project": project, "builds": qs[:100]})


@login_required
def build_detail(request, build_id):
    build = selectors.get_build(user=request.user, build_id=build_id)
    tasks = selectors.build_tasks(build=build)
    depth = layers({t.name: t.needs for t in tasks})
    return render(
        request,
        "builds/build.html",
        {
            "build": build,
            "project": build.project,
            "role": role_of(user=request.user, project=build.project),
            "tasks": tasks,
            "depth": depth,
            "counts": selectors.state_counts(build=build),
            "logs": {t.name: selectors.task_log(build=build, name=t.name) for t in tasks[:200]},
            "params_json": json.dumps(build.params, indent=2),
        },
    )


@login_required
@require_POST
def cancel_build(request, build_id):
    build = selectors.get_build(user=request.user, build_id=build_id, role=Role.EDITOR)
    try:
        services.cancel_build(user=request.user, build=build)
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("build", build_id=build_id)


@login_required
@require_POST
def retry_build(request, build_id):
    build = selectors.get_build(user=request.user, build_id=build_id, role=Role.EDITOR)
    try:
        services.retry_build(user=request.user, build=build)
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("build", build_id=build_id)
