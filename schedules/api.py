"""JSON API of schedules, mounted under /api/projects: parse, call a service, shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema, Status

from buildsite.roles import Role
from buildsite.selectors import get_project

from . import selectors, services
from .models import Schedule

router = Router(tags=["schedules"])


class ScheduleIn(Schema):
    pipeline: str | None = None
    repository: str | None = None
    cron: str
    timezone: str = "UTC"
    params: dict[str, Any] = {}
    ref: str | None = None


class SchedulePatch(Schema):
    paused: bool


class ScheduleOut(Schema):
    id: int
    pipeline: str | None
    repository: str | None
    cron: str
    timezone: str
    params: dict[str, Any]
    ref: str
    paused: bool
    next_run: datetime | None
    last_run: datetime | None
    last_build: int | None
    last_error: str


def schedule_out(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "pipeline": schedule.pipeline.name if schedule.pipeline_id else None,
        "repository": schedule.repository.name if schedule.repository_id else None,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "params": schedule.params,
        "ref": schedule.ref,
        "paused": schedule.paused,
        "next_run": schedule.next_run,
        "last_run": schedule.last_run,
        "last_build": schedule.last_build_id,
        "last_error": schedule.last_error,
    }


@router.post("/{slug}/schedules", response={201: ScheduleOut})
def create_schedule(request: HttpRequest, slug: str, body: ScheduleIn) -> Status[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    schedule = services.create_schedule(
        user=request.user,
        project=project,
        pipeline=body.pipeline,
        repository=body.repository,
        cron=body.cron,
        timezone=body.timezone,
        params=body.params,
        ref=body.ref,
    )
    return Status(201, schedule_out(schedule))


@router.get("/{slug}/schedules", response=list[ScheduleOut])
def list_schedules(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    project = get_project(user=request.user, slug=slug)
    return [schedule_out(s) for s in selectors.schedules_of(project=project)]


@router.patch("/{slug}/schedules/{int:schedule_id}", response=ScheduleOut)
def update_schedule(
    request: HttpRequest, slug: str, schedule_id: int, body: SchedulePatch
) -> dict[str, Any]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    schedule = selectors.get_schedule(project=project, schedule_id=schedule_id)
    schedule = services.set_paused(user=request.user, schedule=schedule, paused=body.paused)
    return schedule_out(schedule)


@router.delete("/{slug}/schedules/{int:schedule_id}", response={204: None})
def delete_schedule(request: HttpRequest, slug: str, schedule_id: int) -> Status[None]:
    project = get_project(user=request.user, slug=slug, role=Role.EDITOR)
    schedule = selectors.get_schedule(project=project, schedule_id=schedule_id)
    services.delete_schedule(user=request.user, schedule=schedule)
    return Status(204, None)
