"""Reads for pipeline health: the facts `builds/health.py` turns into figures, and each
pipeline's last build. The caller has checked the user's role on the project."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max, QuerySet
from django.utils import timezone

from buildsite.errors import InvalidInput, Problem
from buildsite.models import Project
from tasks.models import Task
from tasks.states import BuildState, TaskState

from . import health
from .models import Build, PipelineVersion
from .selectors import pipeline_version, pipelines_of

MAX_DAYS = 365
# The newest builds of the window that are read: keeps a busy pipeline's report to a few
# thousand rows (tasks only of these builds).
MAX_BUILDS = 1000
FINISHED = (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED)
RAN = (TaskState.SUCCEEDED, TaskState.FAILED)


def _seconds(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return max(0.0, (finished - started).total_seconds())


def pipeline_stats(
    *, project: Project, pipeline: str, days: int, now: datetime | None = None
) -> dict[str, Any]:
    """Health of `pipeline` over the finished builds created in the last `days` days
    (at most the newest MAX_BUILDS of them); see `builds/health.py` for the figures."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput([Problem(f"must be between 1 and {MAX_DAYS}", where="days")])
    # The lookup the pipeline API uses (NotFound for an unknown name), reading one column.
    pipeline_id = pipeline_version(project=project, name=pipeline, only=("pipeline",)).pipeline_id
    now = now or timezone.now()
    since = now - timedelta(days=days)
    window = Build.objects.filter(
        pipeline_id=pipeline_id, created_at__gte=since, state__in=FINISHED
    ).order_by("-id")[:MAX_BUILDS]
    rows = list(
        window.values_list(
            "id", "state", "created_at", "started_at", "finished_at", "commit_sha",
            "pipeline_version_id",
        )
    )  # fmt: skip
    builds = [
        health.BuildFact(
            id=build_id,
            state=state,
            day=timezone.localdate(created),
            duration=_seconds(started, finished),
            commit_sha=sha,
        )
        for build_id, state, created, started, finished, sha, _version in rows
    ]
    tasks = _task_facts(window.values("id"), {r[0]: r[6] for r in rows})
    first, last = timezone.localdate(since), timezone.localdate(now)
    day_list = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return {"days": days, **health.summarize(builds, tasks, day_list)}


def _task_facts(
    build_ids: QuerySet[Build], version_of: dict[int, int | None]
) -> list[health.TaskFact]:
    """The succeeded and failed tasks of the builds `build_ids` selects (one query, plus
    one for the retries their definitions declare when some task took several attempts).
    A subquery rather than a list of ids: a thousand parameters is too many for some
    SQLite builds."""
    if not version_of:
        return []
    rows = [
        row
        for row in Task.objects.filter(build_id__in=build_ids, state__in=RAN).values_list(
            "build_id", "name", "state", "attempts", "max_retries", "started_at", "finished_at"
        )
        # A build that finished since the builds were read may have entered the window.
        if row[0] in version_of
    ]
    retries = _declared_retries(
        {version_of[r[0]] for r in rows if r[3] > 1 and version_of[r[0]] is not None}
    )
    facts = []
    for build_id, name, state, attempts, max_retries, started, finished in rows:
        declared = retries.get(version_of[build_id] or 0, {}).get(name, max_retries)
        facts.append(
            health.TaskFact(
                build_id=build_id,
                name=name,
                state=state,
                attempts=attempts,
                duration=_seconds(started, finished),
                # A stopped worker's attempt raises max_retries above the definition's
                # `retries` (builds/attempts.py): that many attempts were not failures.
                given_back=max(0, max_retries - declared),
            )
        )
    return facts


def _declared_retries(version_ids: set[int | None]) -> dict[int, dict[str, int]]:
    ids = [v for v in version_ids if v is not None]
    if not ids:
        return {}
    specs = PipelineVersion.objects.filter(id__in=ids).values_list("id", "spec")
    return {
        vid: {name: int(t.get("retries", 0)) for name, t in spec.get("tasks", {}).items()}
        for vid, spec in specs
    }


def last_builds(*, project: Project) -> dict[int, Build]:
    """Each pipeline's newest build (by id), keyed by pipeline id: one query whatever the
    number of pipelines."""
    newest: QuerySet[Build] = (
        Build.objects.filter(project=project)
        .values("pipeline_id")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    builds = Build.objects.filter(id__in=newest).only(
        "id", "pipeline_id", "state", "started_at", "finished_at"
    )
    return {b.pipeline_id: b for b in builds}


def pipeline_rows(*, project: Project) -> list[dict[str, Any]]:
    """The pipelines list: each pipeline, its latest version, its last build and that
    build's duration (None while it runs or when it never started)."""
    last = last_builds(project=project)
    rows = []
    for p, version in pipelines_of(project=project):
        build = last.get(p.id)
        rows.append(
            {
                "pipeline": p,
                "version": version,
                "last": build,
                "duration": _seconds(build.started_at, build.finished_at) if build else None,
            }
        )
    return rows
