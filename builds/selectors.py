"""Reads of the build engine, each checking the caller's role first."""

from __future__ import annotations

from collections import Counter

from django.db.models import QuerySet

from buildsite.errors import NotFound
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from tasks.models import Task
from tasks.states import TaskState

from .execution import log_path
from .models import Build, Pipeline, PipelineVersion, ResourcePool


def get_build(*, user, build_id: int, role: Role = Role.VIEWER) -> Build:
    build = (
        Build.objects.select_related("project", "pipeline_version__pipeline")
        .filter(id=build_id)
        .first()
    )
    if build is None:
        raise NotFound(f"No build #{build_id}.")
    try:
        require_role(user=user, project=build.project, role=role)
    except NotFound:
        raise NotFound(f"No build #{build_id}.") from None
    return build


def build_tasks(*, build: Build) -> list[Task]:
    return list(Task.objects.filter(build=build).order_by("id"))


def state_counts(*, build: Build) -> dict[str, int]:
    counts = Counter(Task.objects.filter(build=build).values_list("state", flat=True))
    return {s.value: counts.get(s.value, 0) for s in TaskState}


def builds_of(
    *,
    project: Project,
    pipeline: str | None = None,
    state: str | None = None,
    triggered_by: str | None = None,
) -> QuerySet[Build]:
    qs = Build.objects.filter(project=project).select_related(
        "pipeline_version__pipeline", "triggered_by"
    )
    if pipeline:
        qs = qs.filter(pipeline_version__pipeline__name=pipeline)
    if state:
        qs = qs.filter(state=state)
    if triggered_by:
        qs = qs.filter(triggered_by__username=triggered_by)
    return qs.order_by("-id")


def pipelines_of(*, project: Project) -> list[tuple[Pipeline, PipelineVersion | None]]:
    pipelines = list(Pipeline.objects.filter(project=project).prefetch_related("versions"))
    return [(p, max(p.versions.all(), key=lambda v: v.number, default=None)) for p in pipelines]


def pipeline_version(*, project: Project, name: str, number: int | None = None) -> PipelineVersion:
    qs = PipelineVersion.objects.filter(pipeline__project=project, pipeline__name=name)
    version = qs.filter(number=number).first() if number else qs.order_by("-number").first()
    if version is None:
        raise NotFound(f"No pipeline '{name}'" + (f" version {number}" if number else "") + ".")
    return version


def task_of(*, build: Build, name: str) -> Task:
    task = Task.objects.filter(build=build, name=name).first()
    if task is None:
        raise NotFound(f"Build #{build.id} has no task '{name}'.")
    return task


def task_log(*, build: Build, name: str, offset: int = 0) -> str:
    task_of(build=build, name=name)
    path = log_path(build.id, name)
    if not path.exists():
        return ""
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        fh.seek(max(0, offset))
        return fh.read()


def pool_usage(*, project: Project) -> list[dict]:
    active = Task.objects.filter(
        build__project=project, state__in=[TaskState.QUEUED, TaskState.RUNNING]
    ).values_list("claims", flat=True)
    in_use: Counter[str] = Counter()
    for claims in active:
        in_use.update(claims or {})
    return [
        {
            "name": p.name,
            "capacity": p.capacity,
            "in_use": in_use.get(p.name, 0),
            "busy_seconds": round(p.busy_seconds, 3),
        }
        for p in ResourcePool.objects.filter(project=project)
    ]
