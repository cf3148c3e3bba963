"""Reads of schedules: for the API, the pipeline page and upkeep."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from buildsite.errors import NotFound
from buildsite.models import Project

from .models import Schedule


def schedules_of(*, project: Project) -> QuerySet[Schedule]:
    return Schedule.objects.filter(project=project).select_related("pipeline", "repository")


def get_schedule(*, project: Project, schedule_id: int) -> Schedule:
    schedule: Schedule | None = schedules_of(project=project).filter(id=schedule_id).first()
    if schedule is None:
        raise NotFound(f"No schedule #{schedule_id} in '{project.slug}'.")
    return schedule


def pipeline_schedules(*, project: Project, pipeline: str) -> list[Schedule]:
    """The schedules that build the saved pipeline `pipeline` (the pipeline page)."""
    return list(schedules_of(project=project).filter(pipeline__name=pipeline))


def due_schedules(*, now: datetime, limit: int) -> list[Schedule]:
    """Schedules whose next run is `now` or earlier, the longest overdue first, with
    just what claiming one needs. A paused schedule has no next run."""
    return list(
        Schedule.objects.filter(paused=False, next_run__lte=now)
        .order_by("next_run", "id")
        .only("id", "cron", "timezone", "next_run")[:limit]
    )
