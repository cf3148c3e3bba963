"""Writes of schedules, and firing the due ones from the engine's upkeep.

Firing is safe with any number of worker clusters ticking at once (the upkeep lease
can overlap while it changes hands): each due time is claimed by a conditional update
of `next_run`, and only the cluster whose update changed the row starts the build, in
the same transaction. The new `next_run` is the first due time after *now*, not after
the old `next_run`, so a schedule that was due many times while nothing ran (every
cluster down) runs once when upkeep comes back, not once per missed time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone as django_timezone

from audit.services import record_action
from builds.definition import merge_params
from builds.models import Build, Pipeline
from builds.resolution import version_spec
from builds.selectors import pipeline_version
from builds.services import trigger_build
from buildsite.errors import DomainError, InvalidInput, NotFound, Problem
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from repositories.models import Repository
from repositories.services import REF_RE

from .models import Schedule
from .selectors import due_schedules
from .timing import cron_problem, next_run, normalize_cron, timezone_problem

log = logging.getLogger(__name__)
# Due schedules fired per tick: a backlog waits for the next tick instead of making
# one tick (and the lease holder's other upkeep) arbitrarily long.
FIRE_BATCH = 100
TRIGGER = "schedule"


@dataclass(frozen=True)
class Target:
    """What a schedule builds, checked: a saved pipeline, or a repository at a ref."""

    pipeline: Pipeline | None
    repository: Repository | None
    ref: str


def check_schedule(
    *,
    project: Project,
    pipeline: str | None,
    repository: str | None,
    cron: str,
    timezone: str,
    params: Any,
    ref: str | None,
) -> Target:
    """Every problem with a new schedule at once, each named by its field (422)."""
    problems: list[Problem] = []
    if problem := cron_problem(cron):
        problems.append(Problem(problem, where="cron"))
    if problem := timezone_problem(timezone):
        problems.append(Problem(problem, where="timezone"))
    if not isinstance(params, dict):
        problems.append(Problem("params must be a JSON object of parameter values", where="params"))
        params = {}
    found_pipeline: Pipeline | None = None
    found_repository: Repository | None = None
    if pipeline and repository:
        problems.append(
            Problem("give either a pipeline or a repository to build, not both", where="repository")
        )
    elif not pipeline and not repository:
        problems.append(
            Problem(
                "give the pipeline (a saved pipeline's name) or the repository "
                "(a repository's name) that the schedule builds",
                where="pipeline",
            )
        )
    elif pipeline:
        found_pipeline = _check_pipeline(project, pipeline, params, problems)
        if ref:
            problems.append(
                Problem(
                    "only repository schedules take a ref; a pipeline schedule builds the "
                    "pipeline's latest saved version",
                    where="ref",
                )
            )
    elif repository:
        found_repository = Repository.objects.filter(project=project, name=repository).first()
        if found_repository is None:
            problems.append(
                Problem(f"no repository '{repository}' in this project", where="repository")
            )
        else:
            ref = ref or found_repository.branch
            if not _ref_ok(ref):
                problems.append(Problem("not a branch, tag or commit id", where="ref"))
    if problems:
        raise InvalidInput(problems)
    return Target(pipeline=found_pipeline, repository=found_repository, ref=ref or "")


def _check_pipeline(
    project: Project, name: str, params: dict[str, Any], problems: list[Problem]
) -> Pipeline | None:
    try:
        version = pipeline_version(project=project, name=name, only=("id", "pipeline_id"))
    except NotFound:
        problems.append(Problem(f"no pipeline '{name}' in this project", where="pipeline"))
        return None
    # Checked against the latest version now, so a typo is refused at once; a later
    # version that drops a parameter makes the run fail, recorded in `last_error`.
    try:
        merge_params(version_spec(version.id), params)
    except InvalidInput as exc:
        problems.extend(exc.problems)
    found: Pipeline = Pipeline.objects.get(id=version.pipeline_id)
    return found


def _ref_ok(ref: str) -> bool:
    # The rule repository builds apply when they start, so a schedule is refused now
    # rather than failing at every due time.
    return bool(REF_RE.match(ref))


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def create_schedule(
    *,
    user: Any,
    project: Project,
    cron: str,
    pipeline: str | None = None,
    repository: str | None = None,
    timezone: str = "UTC",
    params: dict[str, Any] | None = None,
    ref: str | None = None,
    now: datetime | None = None,
) -> Schedule:
    if user is not None:
        require_role(user=user, project=project, role=Role.EDITOR)
    params = {} if params is None else params
    target = check_schedule(
        project=project,
        pipeline=pipeline,
        repository=repository,
        cron=cron,
        timezone=timezone,
        params=params,
        ref=ref,
    )
    cron = normalize_cron(cron)
    schedule: Schedule = Schedule.objects.create(
        project=project,
        pipeline=target.pipeline,
        repository=target.repository,
        cron=cron,
        timezone=timezone,
        params=params,
        ref=target.ref,
        next_run=next_run(cron=cron, timezone=timezone, after=now or django_timezone.now()),
        created_by=user if user is not None and user.is_authenticated else None,
    )
    record_action(
        actor=user,
        project=project,
        action="schedule.create",
        target=f"schedule {schedule.id}",
        detail=str(schedule),
    )
    return schedule


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def set_paused(
    *, user: Any, schedule: Schedule, paused: bool, now: datetime | None = None
) -> Schedule:
    """Pausing clears `next_run`; resuming sets it to the next due time after now, so
    the times that passed while paused are not made up for."""
    if user is not None:
        require_role(user=user, project=schedule.project, role=Role.EDITOR)
    rows = Schedule.objects.filter(id=schedule.id)
    if paused:
        rows.update(paused=True, next_run=None)
    else:
        following = next_run(
            cron=schedule.cron,
            timezone=schedule.timezone,
            after=now or django_timezone.now(),
        )
        # Only a paused schedule: resuming a running one must not move a time that is due.
        rows.filter(paused=True).update(paused=False, next_run=following)
    schedule.refresh_from_db()
    record_action(
        actor=user,
        project=schedule.project,
        action="schedule.pause" if paused else "schedule.resume",
        target=f"schedule {schedule.id}",
        detail=str(schedule),
    )
    return schedule


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def delete_schedule(*, user: Any, schedule: Schedule) -> None:
    if user is not None:
        require_role(user=user, project=schedule.project, role=Role.EDITOR)
    record_action(
        actor=user,
        project=schedule.project,
        action="schedule.delete",
        target=f"schedule {schedule.id}",
        detail=str(schedule),
    )
    schedule.delete()


def fire_due_schedules(*, now: datetime | None = None, limit: int = FIRE_BATCH) -> int:
    """Start a build for each schedule due at `now` (default: the clock), at most
    `limit`; returns how many due times this call claimed. Registered with the
    engine's upkeep (`apps.py`), so it runs on every tick of the lease holder."""
    now = now or django_timezone.now()
    claimed = 0
    for due in due_schedules(now=now, limit=limit):
        try:
            claimed += _fire(due, now)
        except Exception:  # e.g. a locked database: the claim rolled back; next tick
            log.warning("schedule %s could not fire", due.id, exc_info=True)
    return claimed


def _fire(due: Schedule, now: datetime) -> int:
    try:
        following = next_run(cron=due.cron, timezone=due.timezone, after=now)
    except (ValueError, KeyError) as exc:  # NeverDue, or a zone gone from the database
        # Both were checked when it was made; pause it rather than fail on every tick.
        Schedule.objects.filter(id=due.id, next_run=due.next_run).update(
            paused=True, next_run=None, last_error=f"paused: no next run: {exc}"
        )
        return 0
    with transaction.atomic():
        # The claim. Every cluster that read this due time tries it; the update matches
        # the row for one of them only, and makes every later try a no-op.
        won = Schedule.objects.filter(id=due.id, next_run=due.next_run, paused=False).update(
            next_run=following, last_run=now
        )
        if not won:
            return 0
        schedule = Schedule.objects.select_related("project", "pipeline", "repository").get(
            id=due.id
        )
        try:
            with transaction.atomic():  # a failed trigger leaves nothing half-made
                build = _trigger(schedule)
        except Exception as exc:
            # Recorded, and the claim stands: the next due time will try again, and the
            # other due schedules of this tick go on.
            if isinstance(exc, DomainError):
                error = exc.message
                log.info("schedule %s made no build: %s", schedule.id, error)
            else:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("schedule %s made no build", schedule.id)
            Schedule.objects.filter(id=schedule.id).update(last_error=error[:2000])
        else:
            Schedule.objects.filter(id=schedule.id).update(last_build=build, last_error="")
    return 1


def _trigger(schedule: Schedule) -> Build:
    if schedule.pipeline_id is not None:
        build: Build = trigger_build(
            user=None,
            project=schedule.project,
            pipeline=schedule.pipeline.name,
            params=schedule.params,
            trigger=TRIGGER,
            via=_via(schedule),
        )
        return build
    from repositories.services import trigger_repository_build

    repository_build: Build = trigger_repository_build(
        user=None,
        repository=schedule.repository,
        ref=schedule.ref,
        params=schedule.params,
        trigger=TRIGGER,
        via=_via(schedule),
    )
    return repository_build


def _via(schedule: Schedule) -> str:
    # Who started it, for the audit log: no person, this schedule.
    return f"schedule {schedule.id} ('{schedule.cron}' {schedule.timezone})"
