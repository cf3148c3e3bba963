"""Reads of the build engine, each checking the caller's role first."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from buildsite.errors import NotFound
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from tasks.dag import layers
from tasks.models import Event, Task
from tasks.states import TaskState

from .dispatch import pool_in_use
from .globs import path_problem
from .models import Build, Pipeline, PipelineVersion, ResourcePool


def get_build(*, user: Any, build_id: int, role: Role = Role.VIEWER) -> Build:
    build: Build | None = (
        Build.objects.select_related("project", "pipeline", "pipeline_version", "repository")
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
        "pipeline", "pipeline_version", "repository", "triggered_by"
    )
    if pipeline:
        qs = qs.filter(pipeline__name=pipeline)
    if state:
        qs = qs.filter(state=state)
    if triggered_by:
        qs = qs.filter(triggered_by__username=triggered_by)
    return qs.order_by("-id")


def pipelines_of(*, project: Project) -> list[tuple[Pipeline, PipelineVersion | None]]:
    pipelines = list(Pipeline.objects.filter(project=project).prefetch_related("versions"))
    return [(p, max(p.versions.all(), key=lambda v: v.number, default=None)) for p in pipelines]


def pipeline_version(
    *, project: Project, name: str, number: int | None = None, only: tuple[str, ...] = ()
) -> PipelineVersion:
    """Version `number` of a pipeline, or its latest; `only` reads just those columns."""
    qs = PipelineVersion.objects.filter(pipeline__project=project, pipeline__name=name)
    if only:
        qs = qs.only(*only)
    version: PipelineVersion | None = (
        qs.filter(number=number).first() if number else qs.order_by("-number").first()
    )
    if version is None:
        raise NotFound(f"No pipeline '{name}'" + (f" version {number}" if number else "") + ".")
    return version


def task_of(*, build: Build, name: str) -> Task:
    task: Task | None = Task.objects.filter(build=build, name=name).first()
    if task is None:
        raise NotFound(f"Build #{build.id} has no task '{name}'.")
    return task


NOT_STARTED = frozenset({TaskState.PENDING, TaskState.READY, TaskState.QUEUED})


def task_log(*, build: Build, name: str, offset: int = 0) -> str:
    """The task's whole log (every attempt, each after the first marked), from
    character `offset` on: its `log` events in order, wherever the task ran. NotFound
    for a task that has not started (there is no log anywhere yet) and for a build
    whose logs retention removed: an empty log is only ever a log that is empty."""
    task = task_of(build=build, name=name)
    if build.files_purged:
        raise NotFound(f"The logs of build #{build.id} were removed by retention.")
    texts = (
        Event.objects.filter(build_id=build.id, task_name=name, type=Event.Type.LOG)
        .order_by("id")
        .values_list("data", flat=True)
    )
    text = "".join((data or {}).get("text", "") for data in texts.iterator(chunk_size=500))
    if not text and task.attempts == 0 and task.state in NOT_STARTED:
        raise NotFound(f"Task '{name}' of build #{build.id} has not started: no log yet.")
    return text[max(0, offset) :]


def build_artifacts(*, build: Build) -> list[dict[str, Any]]:
    """Every file the build's tasks hand on (restored ones of cached tasks included)."""
    rows = (
        Task.objects.filter(build=build)
        .exclude(artifacts=[])
        .order_by("id")
        .values_list("name", "artifacts")
    )
    return [
        {"task": name, "path": f["path"], "size": f["size"], "sha256": f["sha256"]}
        for name, files in rows
        for f in files
    ]


def artifact_of(*, build: Build, task_name: str, path: str) -> dict[str, Any]:
    """One stored file of a task, found by its exact relative path."""
    missing = NotFound(f"Task '{task_name}' of build #{build.id} has no artifact '{path}'.")
    if path_problem(path):
        raise missing
    task = task_of(build=build, name=task_name)
    for record in task.artifacts:
        if record["path"] == path:
            found: dict[str, Any] = record
            return found
    raise missing


def pool_usage(*, project: Project) -> list[dict[str, Any]]:
    pools = list(ResourcePool.objects.filter(project=project))
    in_use = pool_in_use(project.id, {p.name: p.capacity for p in pools})
    return [
        {
            "name": p.name,
            "capacity": p.capacity,
            "in_use": in_use.get(p.name, 0),
            "busy_seconds": round(p.busy_seconds, 3),
        }
        for p in pools
    ]


# --- reads for the browser UI -----------------------------------------------------------
# Pure helpers first (layout, utilisation, diff, ANSI), then the queries the pages use.

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
NODE_W, NODE_H, GAP_X, GAP_Y = 170, 46, 60, 18


def strip_ansi(text: str) -> str:
    """Terminal colour and cursor codes removed (logs are shown as plain text)."""
    return ANSI_RE.sub("", text)


def dag_layout(needs: dict[str, list[str]]) -> dict[str, Any]:
    """Boxes and edges for drawing the DAG left to right, one column per dependency depth
    (tasks.dag.layers), rows in definition order within a column."""
    depth = layers(needs)
    columns: dict[int, list[str]] = {}
    for name in needs:
        columns.setdefault(depth[name], []).append(name)
    nodes: dict[str, dict[str, Any]] = {}
    for col, names in columns.items():
        for row, name in enumerate(names):
            nodes[name] = {
                "name": name,
                "x": col * (NODE_W + GAP_X),
                "y": row * (NODE_H + GAP_Y),
                "w": NODE_W,
                "h": NODE_H,
            }
    edges = []
    for name, deps in needs.items():
        for dep in deps:
            x1, y1 = nodes[dep]["x"] + NODE_W, nodes[dep]["y"] + NODE_H / 2
            x2, y2 = nodes[name]["x"], nodes[name]["y"] + NODE_H / 2
            bend = GAP_X / 2
            edges.append(
                {
                    "from": dep,
                    "to": name,
                    "d": f"M{x1} {y1} C{x1 + bend} {y1} {x2 - bend} {y2} {x2 - 4} {y2}",
                }
            )
    width = (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = max((len(v) for v in columns.values()), default=1) * (NODE_H + GAP_Y) - GAP_Y
    return {"nodes": list(nodes.values()), "edges": edges, "width": width, "height": height}


def utilization(
    intervals: list[tuple[datetime, datetime, int]],
    *,
    capacity: int,
    start: datetime,
    end: datetime,
    buckets: int,
) -> list[float]:
    """Share of `capacity` used in each of `buckets` equal slices of [start, end), from
    (started, finished, amount) intervals; 0.0 when the pool has no capacity."""
    span = (end - start).total_seconds() / buckets
    used = [0.0] * buckets
    if capacity <= 0 or span <= 0:
        return used
    for began, ended, amount in intervals:
        lo, hi = max(began, start), min(ended, end)
        if hi <= lo or amount <= 0:
            continue
        first = int((lo - start).total_seconds() // span)
        last = min(buckets - 1, int((hi - start).total_seconds() // span))
        for i in range(first, last + 1):
            b_lo = start + timedelta(seconds=i * span)
            b_hi = start + timedelta(seconds=(i + 1) * span)
            overlap = (min(hi, b_hi) - max(lo, b_lo)).total_seconds()
            if overlap > 0:
                used[i] += overlap * amount
    return [min(1.0, u / (span * capacity)) for u in used]


def definition_diff(old: str, new: str, *, old_label: str, new_label: str) -> list[dict[str, str]]:
    """A unified diff as lines tagged add / del / hunk / context, for rendering."""
    out = []
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), old_label, new_label, lineterm=""
    )
    for line in lines:
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "context"
        out.append({"kind": kind, "text": line})
    return out


def task_view(task: Task) -> dict[str, Any]:
    """What the build page knows about one task (JSON-safe, also embedded in the page)."""
    return {
        "name": task.name,
        "state": task.state,
        "needs": task.needs,
        "attempts": task.attempts,
        "max_retries": task.max_retries,
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
        "outputs": task.outputs,
        "error": task.error,
        "cached": task.state == TaskState.CACHED,
        "reused_from": task.reused_from_id,
        "artifacts": [{"path": f["path"], "size": f["size"]} for f in task.artifacts],
    }


def build_snapshot(*, build: Build) -> dict[str, Any]:
    """The build page's starting point: the newest event id first, then the rows, so
    every change after that id reaches the page through the socket's `?after=`."""
    last = Event.objects.filter(build_id=build.id).aggregate(m=Max("id"))["m"] or 0
    tasks = build_tasks(build=build)
    layout = dag_layout({t.name: list(t.needs) for t in tasks})
    for node, task in zip(layout["nodes"], _in_layout_order(layout, tasks), strict=True):
        node["state"] = task.state
    return {
        "build": build.id,
        "project": build.project.slug,
        "state": build.state,
        "after": last,
        "tasks": [task_view(t) for t in tasks],
        "layout": layout,
        "counts": state_counts(build=build),
    }


def _in_layout_order(layout: dict[str, Any], tasks: list[Task]) -> list[Task]:
    by_name = {t.name: t for t in tasks}
    return [by_name[n["name"]] for n in layout["nodes"]]


def task_log_upto(
    *, build: Build, name: str, upto: int, max_chars: int = 200_000
) -> tuple[str, bool]:
    """The task's log as its `log` events carried it up to event `upto`: exactly what a
    page that then listens `?after=upto` must not receive twice. Keeps the tail when long."""
    task_of(build=build, name=name)
    texts = (
        Event.objects.filter(build_id=build.id, task_name=name, type=Event.Type.LOG, id__lte=upto)
        .order_by("-id")
        .values_list("data", flat=True)
    )
    parts: list[str] = []
    size, truncated = 0, False
    for data in texts.iterator(chunk_size=200):
        text = (data or {}).get("text", "")
        parts.append(text)
        size += len(text)
        if size >= max_chars:
            truncated = True
            break
    text = "".join(reversed(parts))
    return strip_ansi(text[-max_chars:] if truncated else text), truncated


def latest_event_id(*, project: Project) -> int:
    """Where a page that shows the project as of now starts listening (`?after=`)."""
    return Event.objects.filter(project=project).aggregate(m=Max("id"))["m"] or 0


def running_builds(*, project: Project) -> QuerySet[Build]:
    return builds_of(project=project).filter(finished_at__isnull=True)


def recent_failures(*, project: Project, limit: int = 10) -> list[Task]:
    return list(
        Task.objects.filter(
            build__project=project, state=TaskState.FAILED, finished_at__isnull=False
        )
        .select_related("build__pipeline", "build__pipeline_version")
        .order_by("-finished_at")[:limit]
    )


def triggerers_of(*, project: Project) -> list[str]:
    return sorted(
        {
            name
            for name in Build.objects.filter(project=project, triggered_by__isnull=False)
            .order_by()
            .values_list("triggered_by__username", flat=True)
            .distinct()
        }
    )


def pipeline_history(*, project: Project, name: str) -> list[PipelineVersion]:
    versions = list(
        PipelineVersion.objects.filter(pipeline__project=project, pipeline__name=name)
        .select_related("created_by")
        .order_by("-number")
    )
    if not versions:
        raise NotFound(f"No pipeline '{name}'.")
    return versions


def resource_report(
    *, project: Project, hours: float = 6.0, buckets: int = 36, now: datetime | None = None
) -> dict[str, Any]:
    """Pools with capacity, what holds a claim now, and utilisation per time slice computed
    from finished tasks' started/finished times and claims."""
    now = now or timezone.now()
    start = now - timedelta(hours=hours)
    pools = list(ResourcePool.objects.filter(project=project))
    holders = list(
        Task.objects.filter(build__project=project, state__in=[TaskState.QUEUED, TaskState.RUNNING])
        .select_related("build")
        .order_by("id")
    )
    finished = Task.objects.filter(
        build__project=project,
        started_at__isnull=False,
        started_at__lt=now,
    ).filter(Q(finished_at__gte=start) | Q(finished_at__isnull=True, state=TaskState.RUNNING))
    intervals: dict[str, list[tuple[datetime, datetime, int]]] = {}
    for began, ended, claims in finished.values_list("started_at", "finished_at", "claims"):
        for pool, amount in (claims or {}).items():
            intervals.setdefault(pool, []).append((began, ended or now, int(amount or 0)))
    usage = {u["name"]: u for u in pool_usage(project=project)}
    rows = []
    for pool in pools:
        series = utilization(
            intervals.get(pool.name, []),
            capacity=pool.capacity,
            start=start,
            end=now,
            buckets=buckets,
        )
        rows.append(
            {
                "name": pool.name,
                "capacity": pool.capacity,
                "in_use": usage[pool.name]["in_use"],
                "busy_seconds": usage[pool.name]["busy_seconds"],
                "series": series,
                "average_percent": round(100 * sum(series) / len(series)) if series else 0,
                "bars": [
                    {
                        "x": i * 10,
                        "h": round(u * 100, 1),
                        "y": round(100 - u * 100, 1),
                        "percent": round(u * 100),
                        "label": timezone.localtime(
                            start + timedelta(hours=hours * i / buckets)
                        ).strftime("%H:%M"),
                    }
                    for i, u in enumerate(series)
                ],
                "holders": [t for t in holders if (t.claims or {}).get(pool.name)],
            }
        )
    return {
        "pools": rows,
        "holders": holders,
        "start": start,
        "end": now,
        "buckets": buckets,
        "bucket_minutes": hours * 60 / buckets,
    }
