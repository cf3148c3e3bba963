"""Build engine API: parse input, call a service or selector, shape the output."""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status

from buildsite.errors import InvalidInput, NotFound, Problem
from buildsite.roles import Role
from buildsite.selectors import get_project
from tasks.events import serialize
from tasks.selectors import events_after

from . import rerun, selectors, services, stats
from .artifacts import open_blob
from .models import Build

project_builds_router = Router(tags=["builds"])
builds_router = Router(tags=["builds"])


class PipelineIn(Schema):
    name: str
    definition: str


class PipelineOut(Schema):
    name: str
    version: int


class PipelineDetail(PipelineOut):
    definition: str
    spec: dict[str, Any]
    created_at: datetime
    versions: list[int]


class BuildIn(Schema):
    pipeline: str | None = None
    params: dict[str, Any] = {}
    version: int | None = None
    # A build of a repository (its id or name) at a branch, tag or commit id.
    repository: int | str | None = None
    ref: str | None = None


class ArtifactOut(Schema):
    path: str
    size: int
    sha256: str


class BuildArtifactOut(ArtifactOut):
    task: str


class TaskOut(Schema):
    name: str
    state: str
    needs: list[str]
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    outputs: dict[str, Any]
    error: str
    cache_key: str
    artifacts: list[ArtifactOut]
    # The build whose run produced a re-run's reused result (state cached).
    reused_from: int | None = None

    @staticmethod
    def resolve_reused_from(obj: Any) -> int | None:
        # The id, not the related Build (one query per task).
        reused: int | None = getattr(obj, "reused_from_id", None)
        return reused


class CommitOut(Schema):
    sha: str
    ref: str
    author: str
    message: str


class BuildOut(Schema):
    id: int
    project: str
    pipeline: str
    version: int | None
    state: str
    params: dict[str, Any]
    trigger: str
    repository: str | None
    commit: CommitOut | None
    rerun_of: int | None
    error: str
    triggered_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, int] | None = None
    tasks: list[TaskOut] | None = None


class PoolIn(Schema):
    name: str
    capacity: int


class PoolOut(Schema):
    name: str
    capacity: int
    in_use: int
    busy_seconds: float


class RerunIn(Schema):
    from_: str = Field(..., alias="from")


class PurgeIn(Schema):
    task: str | None = None


class SlowTaskOut(Schema):
    task: str
    runs: int
    duration_p50: float | None
    duration_p95: float | None


class FlakyTaskOut(Schema):
    task: str
    flaky_runs: int
    builds: list[int]
    reason: str


class PipelineStatsOut(Schema):
    """Durations in seconds; see docs/pipelines.md, "Pipeline health"."""

    builds: int
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float | None
    duration_p50: float | None
    duration_p95: float | None
    slowest_tasks: list[SlowTaskOut]
    flaky_tasks: list[FlakyTaskOut]


def commit_out(build: Build) -> dict[str, str] | None:
    if not build.commit_sha and not build.commit_ref:
        return None
    return {
        "sha": build.commit_sha,
        "ref": build.commit_ref,
        "author": build.commit_author,
        "message": build.commit_message,
    }


def build_out(build: Build, *, with_tasks: bool = False) -> dict[str, Any]:
    data = {
        "id": build.id,
        "project": build.project.slug,
        "pipeline": build.pipeline.name,
        # None while a repository build is still reading its pipeline.
        "version": build.pipeline_version.number if build.pipeline_version else None,
        "state": build.state,
        "params": build.params,
        "trigger": build.trigger,
        "repository": build.repository.name if build.repository_id else None,
        "commit": commit_out(build),
        "rerun_of": build.rerun_of_id,
        "error": build.error,
        "triggered_by": build.triggered_by.username if build.triggered_by else None,
        "created_at": build.created_at,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
    }
    if with_tasks:
        data["tasks"] = selectors.build_tasks(build=build)
        data["counts"] = selectors.state_counts(build=build)
    return data


@project_builds_router.post("/{slug}/pipelines", response={201: PipelineOut})
def save_pipeline(request: HttpRequest, slug: str, body: PipelineIn) -> Status[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    version = services.save_pipeline(
        user=request.user, project=project, name=body.name, definition=body.definition
    )
    return Status(201, {"name": body.name, "version": version.number})


@project_builds_router.get("/{slug}/pipelines", response=list[PipelineOut])
def list_pipelines(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug)
    return [
        {"name": p.name, "version": v.number if v else 0}
        for p, v in selectors.pipelines_of(project=project)
    ]


@project_builds_router.get("/{slug}/pipelines/{name}", response=PipelineDetail)
def pipeline_detail(
    request: HttpRequest, slug: str, name: str, version: int | None = None
) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug)
    pv = selectors.pipeline_version(project=project, name=name, number=version)
    numbers = list(pv.pipeline.versions.order_by("number").values_list("number", flat=True))
    return {
        "name": name,
        "version": pv.number,
        "definition": pv.definition,
        "spec": pv.spec,
        "created_at": pv.created_at,
        "versions": numbers,
    }


@project_builds_router.get("/{slug}/pipelines/{name}/stats", response=PipelineStatsOut)
def pipeline_stats(request: HttpRequest, slug: str, name: str, days: int = 30) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug)
    return stats.pipeline_stats(project=project, pipeline=name, days=days)


@project_builds_router.post("/{slug}/builds", response={201: BuildOut})
def trigger_build(request: HttpRequest, slug: str, body: BuildIn) -> Status[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    if body.repository is not None:
        from repositories.selectors import get_repository
        from repositories.services import trigger_repository_build

        repository = get_repository(project=project, ref=body.repository)
        build = trigger_repository_build(
            user=request.user, repository=repository, ref=body.ref, params=body.params
        )
        build.refresh_from_db()  # where jobs run inline, it has been prepared already
    elif body.pipeline is None:
        raise InvalidInput([Problem("name a pipeline or a repository", where="pipeline")])
    else:
        build = services.trigger_build(
            user=request.user,
            project=project,
            pipeline=body.pipeline,
            params=body.params,
            version=body.version,
        )
    return Status(201, build_out(build, with_tasks=True))


class BuildFilters(Schema):
    pipeline: str | None = None
    state: str | None = None
    triggered_by: str | None = None
    limit: int = 50


@project_builds_router.get("/{slug}/builds", response=list[BuildOut])
def list_builds(
    request: HttpRequest, slug: str, filters: Query[BuildFilters]
) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug)
    qs = selectors.builds_of(
        project=project,
        pipeline=filters.pipeline,
        state=filters.state,
        triggered_by=filters.triggered_by,
    )
    return [build_out(b) for b in qs[: max(1, min(filters.limit, 500))]]


@project_builds_router.get("/{slug}/resources", response=list[PoolOut])
def list_pools(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug)
    return selectors.pool_usage(project=project)


@project_builds_router.post("/{slug}/resources", response={201: PoolOut})
def set_pool(request: HttpRequest, slug: str, body: PoolIn) -> Status[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug)
    services.set_pool(user=request.user, project=project, name=body.name, capacity=body.capacity)
    pool = next(p for p in selectors.pool_usage(project=project) if p["name"] == body.name)
    return Status(201, pool)


@project_builds_router.post("/{slug}/cache/purge")
def purge_cache(request: HttpRequest, slug: str, body: PurgeIn | None = None) -> dict[str, int]:
    project = get_project(user=request.user, slug=slug)
    deleted = services.purge_cache(
        user=request.user, project=project, task_name=body.task if body else None
    )
    return {"deleted": deleted}


@builds_router.get("/{int:build_id}", response=BuildOut)
def build_detail(request: HttpRequest, build_id: int) -> dict[str, Any]:
    return build_out(selectors.get_build(user=request.user, build_id=build_id), with_tasks=True)


@builds_router.post("/{int:build_id}/cancel", response=BuildOut)
def cancel_build(request: HttpRequest, build_id: int) -> dict[str, Any]:
    build = selectors.get_build(user=request.user, build_id=build_id)
    return build_out(services.cancel_build(user=request.user, build=build), with_tasks=True)


@builds_router.post("/{int:build_id}/retry", response=BuildOut)
def retry_build(request: HttpRequest, build_id: int) -> dict[str, Any]:
    build = selectors.get_build(user=request.user, build_id=build_id)
    return build_out(services.retry_build(user=request.user, build=build), with_tasks=True)


@builds_router.post("/{int:build_id}/rerun", response={201: BuildOut})
def rerun_build(request: HttpRequest, build_id: int, body: RerunIn) -> Status[dict[str, Any]]:
    build = selectors.get_build(user=request.user, build_id=build_id)
    new = rerun.rerun_build(user=request.user, build=build, from_task=body.from_)
    return Status(201, build_out(new, with_tasks=True))


@builds_router.get("/{int:build_id}/tasks/{name}/log")
def task_log(request: HttpRequest, build_id: int, name: str, offset: int = 0) -> HttpResponse:
    build = selectors.get_build(user=request.user, build_id=build_id)
    text = selectors.task_log(build=build, name=name, offset=offset)
    return HttpResponse(text, content_type="text/plain; charset=utf-8")


@builds_router.get("/{int:build_id}/artifacts", response=list[BuildArtifactOut])
def list_artifacts(request: HttpRequest, build_id: int) -> list[dict[str, Any]]:
    build = selectors.get_build(user=request.user, build_id=build_id)
    return selectors.build_artifacts(build=build)


@builds_router.get("/{int:build_id}/artifacts/{task}/{path:path}")
def download_artifact(request: HttpRequest, build_id: int, task: str, path: str) -> FileResponse:
    """The file's bytes, streamed from the artifact store."""
    build = selectors.get_build(user=request.user, build_id=build_id)
    record = selectors.artifact_of(build=build, task_name=task, path=path)
    try:
        stored = open_blob(record["sha256"])
    except OSError:  # FileNotFoundError, or the S3 client's error for a missing key
        raise NotFound(
            f"The stored bytes of '{path}' are missing from the artifact store."
        ) from None
    response = FileResponse(
        stored,
        as_attachment=True,
        filename=PurePosixPath(path).name,
        content_type="application/octet-stream",
    )
    response["Content-Length"] = str(record["size"])
    response["X-Content-SHA256"] = record["sha256"]
    return response


@builds_router.get("/{int:build_id}/events")
def build_events(
    request: HttpRequest, build_id: int, after: int = 0, limit: int = 1000
) -> dict[str, list[dict[str, Any]]]:
    build = selectors.get_build(user=request.user, build_id=build_id)
    events = events_after(build_id=build.id, after=after, limit=max(1, min(limit, 5000)))
    return {"events": [serialize(e) for e in events]}
