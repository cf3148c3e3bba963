"""Writes of the build engine: pipelines, triggering, cancel, retry, pools and cache."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import record_action
from buildsite.errors import Conflict, InvalidInput, Problem
from buildsite.models import Project
from buildsite.roles import Role
from buildsite.selectors import require_role
from tasks import rawsql
from tasks.bulk import insert_rows
from tasks.models import Event, Task
from tasks.services import (
    Change,
    EventRow,
    apply_transitions,
    record_event,
    record_new_tasks,
    write_events,
)
from tasks.states import TERMINAL, BuildState, TaskState, build_state_of

from . import cache
from .artifacts import touch_blobs
from .definition import POOL_PATTERN, merge_params, parse_definition
from .dispatch import dispatch_on_commit, lock_project
from .models import Build, Pipeline, PipelineVersion, ResourcePool
from .resolution import (
    BuildTasks,
    TaskNode,
    advance,
    encoded_spec_columns,
    roots_and_unblocked,
    version_spec,
)
from .selectors import pipeline_version
from .signals import send_build_state_changed

S = TaskState
OPEN_STATES = [str(s) for s in TaskState if s not in TERMINAL]
NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,99}$"


# --- pipelines --------------------------------------------------------------------------
@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def save_pipeline(*, user: Any, project: Project, name: str, definition: str) -> PipelineVersion:
    """Validate and store a new immutable version; the same text as the latest version
    returns that version instead of a duplicate."""
    if user is not None:
        require_role(user=user, project=project, role=Role.EDITOR)
    if not re.match(NAME_RE, name or ""):
        raise InvalidInput([Problem("use lower-case letters, digits, _ and -", where="name")])
    spec = parse_definition(definition)
    pipeline, _ = Pipeline.objects.get_or_create(project=project, name=name)
    latest: PipelineVersion | None = pipeline.versions.order_by("-number").first()
    if latest is not None and latest.definition == definition:
        return latest  # nothing changed, so nothing to record
    version = _new_version(pipeline, definition, spec, user)
    record_action(
        actor=user,
        project=project,
        action="pipeline.save",
        target=f"pipeline {name}",
        detail=f"version {version.number}",
    )
    return version


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def version_of_text(*, pipeline: Pipeline, definition: str) -> PipelineVersion:
    """The version a repository build runs: the one holding exactly this text (so
    builds of branches that differ share versions), or a new one. Validated like a
    saved pipeline: InvalidInput with every problem's line."""
    spec = parse_definition(definition)
    same: PipelineVersion | None = (
        pipeline.versions.filter(definition=definition).order_by("-number").first()
    )
    return same or _new_version(pipeline, definition, spec, None)


def _new_version(
    pipeline: Pipeline, definition: str, spec: dict[str, Any], user: Any
) -> PipelineVersion:
    number = (pipeline.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    try:
        with transaction.atomic():
            version: PipelineVersion = PipelineVersion.objects.create(
                pipeline=pipeline,
                number=number,
                definition=definition,
                spec=spec,
                created_by=user if user is not None and user.is_authenticated else None,
            )
    except IntegrityError as exc:
        raise Conflict("another version was saved at the same time; save again") from exc
    return version


# --- builds -----------------------------------------------------------------------------
@contextmanager
def gc_paused() -> Iterator[None]:
    """Resolving a large build allocates hundreds of thousands of short-lived objects and
    none of them form cycles; pausing the cyclic collector meanwhile saves ~20% of a
    10,000-task build (measured with bench/scheduler.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def trigger_build(
    *,
    user: Any,
    project: Project,
    pipeline: str,
    params: dict[str, Any] | None = None,
    version: int | None = None,
    trigger: str = "manual",
    via: str = "",
) -> Build:
    """`via` says, for the audit log, what started a build that no person started
    ("schedule 3 …")."""
    if user is not None:
        require_role(user=user, project=project, role=Role.EDITOR)
    # The spec of a large pipeline is big; it comes from the per-process version cache.
    pv = pipeline_version(
        project=project, name=pipeline, number=version, only=("id", "number", "pipeline_id")
    )
    spec = version_spec(pv.id)
    merged = merge_params(spec, params)
    check_claims(project, spec)
    build: Build = Build.objects.create(
        project=project,
        pipeline_id=pv.pipeline_id,
        pipeline_version=pv,
        params=merged,
        trigger=trigger,
        triggered_by=user if user is not None and user.is_authenticated else None,
    )
    record_event(
        project_id=project.id,
        build_id=build.id,
        type=Event.Type.BUILD_STATE,
        new_state=BuildState.QUEUED,
        data={"pipeline": pipeline, "version": pv.number},
    )
    send_build_state_changed(build=build, old="", new=BuildState.QUEUED)
    record_action(
        actor=user,
        project=project,
        action="build.trigger",
        target=f"build {build.id}",
        detail=trigger_detail(via=via, source=f"pipeline {pipeline} v{pv.number}", params=params),
    )
    start_tasks(build=build, spec=spec)
    return build


def trigger_detail(*, via: str, source: str, params: Mapping[str, Any] | None) -> str:
    """The audit line of a started build: what started it, what it builds, and the
    names of the params given (not their values: the line stays short)."""
    detail = f"{via}: {source}" if via else source
    if params:
        detail += ", params " + ", ".join(sorted(str(k) for k in params))
    return detail


@dataclass(frozen=True)
class Reused:
    """A finished task's result that a re-run takes over instead of running the task
    again (builds/rerun.py)."""

    build_id: int  # the build whose run produced it
    outputs: dict[str, Any]
    artifacts: list[dict[str, Any]]
    cache_key: str


def start_tasks(
    *, build: Build, spec: dict[str, Any], reused: Mapping[str, Reused] | None = None
) -> None:
    """Create the tasks of a build whose pipeline version is set, resolved (READY,
    CACHED, ...) in memory and inserted at once, then dispatch on commit. Runs inside
    the caller's transaction.

    With `reused` (a re-run), those tasks are created CACHED with an earlier build's
    result and every other task is to run again: the ones that can start are made
    READY without a cache lookup, since a hit would hand back the very result the
    re-run was asked to replace."""
    with gc_paused():
        tasks = BuildTasks(build.id)
        for name, t in spec["tasks"].items():
            tasks[name] = TaskNode(name=name, needs=t["needs"], build_id=build.id)
        taken = _take_over(tasks, reused or {})
        if reused is None:
            changes = advance(build, tasks, roots_and_unblocked(tasks), look_ahead=True)
        else:
            changes = _ready_to_run(tasks, roots_and_unblocked(tasks))
        _insert_tasks(build, spec, tasks, taken + changes, timezone.now())
        _record_reused(build, tasks, reused or {})
        record_new_tasks(project_id=build.project_id, build_id=build.id, changes=changes)
    refresh_build_state(build=build)
    dispatch_on_commit(build.project_id)


def _take_over(tasks: BuildTasks, reused: Mapping[str, Reused]) -> list[Change]:
    """Reused tasks as resolved nodes; the steps only carry their fields to the INSERT
    (their events are written by `_record_reused`, saying where the result came from)."""
    now = timezone.now()
    steps: list[Change] = []
    for name, result in reused.items():
        node = tasks[name]
        node.state, node.cache_key = S.CACHED, result.cache_key
        node.outputs, node.artifacts = result.outputs, result.artifacts
        steps.append(Change(node, S.PENDING, S.READY, {"ready_at": now}))
        steps.append(
            Change(node, S.READY, S.CACHED, {"finished_at": now, "reused_from": result.build_id})
        )
    # As for a cache hit: retention must not take blobs this build now hands on.
    if digests := list(dict.fromkeys(a["sha256"] for r in reused.values() for a in r.artifacts)):
        touch_blobs(digests)
    return steps


def _ready_to_run(tasks: BuildTasks, start: list[str]) -> list[Change]:
    """`start` made READY without a cache key, so without a lookup. Keyless, the new
    result is not stored either, and the tasks downstream are keyed on what it really
    is: under the old key they would be hits derived from the result being replaced."""
    now = timezone.now()
    changes: list[Change] = []
    for name in start:
        changes.append(Change(tasks[name], S.PENDING, S.READY, {"ready_at": now}))
        tasks[name].state = S.READY
    return changes


def _record_reused(build: Build, tasks: BuildTasks, reused: Mapping[str, Reused]) -> None:
    """The reused tasks' creation events, saying which build produced their result (the
    live page and the event API show it)."""
    now = timezone.now()
    write_events(
        [
            EventRow(
                build.project_id,
                build.id,
                tasks[name].id,
                name,
                Event.Type.TASK_STATE,
                str(S.PENDING),
                str(S.CACHED),
                {"via": [str(S.READY)], "reused_from": result.build_id},
                now,
            )
            for name, result in reused.items()
        ]
    )


TASK_COLUMNS = (
    "build",
    "name",
    "state",
    "needs",
    "priority",
    "claims",
    "deadline",
    "deadline_missed",
    "max_retries",
    "attempts",
    "cache_key",
    "outputs",
    "artifacts",
    "error",
    "ready_at",
    "finished_at",
    "worker",
    "reused_from",
)


def _insert_tasks(
    build: Build, spec: dict[str, Any], tasks: BuildTasks, changes: list[Change], now: datetime
) -> None:
    """One multi-row INSERT of every task in its resolved state, then their ids."""
    resolved: dict[str, dict[str, Any]] = {}
    for change in changes:
        resolved.setdefault(change.task.name, {}).update(change.fields)
    rows = []
    encoded = encoded_spec_columns(build.pipeline_version_id)
    for name, node in tasks.items():
        t = spec["tasks"][name]
        extra = resolved.get(name, {})
        deadline = now + timedelta(seconds=t["deadline"]) if t.get("deadline") else None
        needs, claims = encoded[name]
        rows.append(
            (
                build.id,
                name,
                str(node.state),
                needs,
                t["priority"],
                claims,
                deadline,
                False,
                t["retries"],
                0,
                node.cache_key,
                node.outputs,
                node.artifacts,
                "",
                extra.get("ready_at"),
                extra.get("finished_at"),
                "",
                extra.get("reused_from"),
            )
        )
    insert_rows(Task, TASK_COLUMNS, rows, prepared=frozenset({"needs", "claims"}))
    sql = f"SELECT name, id FROM {rawsql.table(Task)} WHERE build_id = %s"
    for name, task_id in rawsql.fetch(sql, [build.id]):
        tasks[name].id = task_id


def _open_tasks_claiming_more(
    *, project: Project, pool: str, capacity: int
) -> list[tuple[int, str, int]]:
    """(build, task, claim) of unfinished tasks that claim more of `pool` than `capacity`."""
    rows = (
        Task.objects.filter(build__project=project, state__in=OPEN_STATES)
        .order_by("build_id", "id")
        .values_list("build_id", "name", "claims")
    )
    return [
        (build_id, name, claims[pool])
        for build_id, name, claims in rows
        if (claims or {}).get(pool, 0) > capacity
    ]


def check_claims(project: Project, spec: dict[str, Any]) -> None:
    lock_project(project.id)
    capacity = dict(ResourcePool.objects.filter(project=project).values_list("name", "capacity"))
    problems = [
        Problem(
            f"claims {pool}: {amount} but pool '{pool}' has capacity {capacity[pool]}",
            task.get("line"),
            f"tasks.{name}",
        )
        for name, task in spec["tasks"].items()
        for pool, amount in task["resources"].items()
        if pool in capacity and amount > capacity[pool]
    ]
    if problems:
        raise InvalidInput(problems)


def lock_build(build: Build) -> None:
    """One writer at a time per build (PostgreSQL; SQLite's IMMEDIATE transaction
    already holds the only write lock): under READ COMMITTED, two parents ending in
    two transactions could each miss the other and leave their child PENDING."""
    if connection.features.has_select_for_update:
        rawsql.fetch(f"SELECT id FROM {rawsql.table(Build)} WHERE id = %s FOR UPDATE", [build.id])


def refresh_build_state(*, build: Build, known_open: bool = False) -> Build:
    """Derive the build's state from its tasks and record a change as an event.
    `known_open`: the caller knows that a task of the build is open (it just made one
    READY, say), which spares the query for one."""
    # Called after every task: while anything is open (the common case) one indexed
    # EXISTS answers it, without reading the build's task states.
    still_open = known_open or bool(
        rawsql.fetch(
            f"SELECT 1 FROM {rawsql.table(Task)} WHERE build_id = %s "
            f"AND state IN ({rawsql.marks(len(OPEN_STATES))}) LIMIT 1",
            [build.id, *OPEN_STATES],
        )
    )
    if still_open and build.state == BuildState.RUNNING:
        return build
    # The caller's copy may be stale: another process may have started or ended it.
    lock_build(build)
    fresh = Build.objects.values("state", "started_at", "cancel_requested")
    current = fresh.get(id=build.id)
    build.state, build.started_at = current["state"], current["started_at"]
    build.cancel_requested = current["cancel_requested"]
    started = build.started_at is not None
    if still_open:
        new = BuildState.RUNNING if started else BuildState.QUEUED
    else:
        tasks = Task.objects.filter(build_id=build.id)
        # order_by(): the model's ordering would add `id` to the DISTINCT (a row per task).
        states = list(tasks.order_by().values_list("state", flat=True).distinct())
        new = build_state_of(states, started=started)
        if build.cancel_requested:
            new = BuildState.CANCELLED
    if new == build.state:
        return build
    now = timezone.now()
    fields: dict[str, Any] = {"state": new}
    if new in (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED):
        fields["finished_at"] = now
    if new != BuildState.QUEUED and build.started_at is None:
        fields["started_at"] = now
    if Build.objects.filter(id=build.id, state=build.state).update(**fields):
        record_event(
            project_id=build.project_id,
            build_id=build.id,
            type=Event.Type.BUILD_STATE,
            old_state=build.state,
            new_state=new,
        )
        send_build_state_changed(build=build, old=build.state, new=new)
        for key, value in fields.items():
            setattr(build, key, value)
    return build


def fail_unstarted_build(*, build: Build, error: str, data: dict[str, Any]) -> bool:
    """End a build that has no tasks yet (its pipeline could not be read) as FAILED,
    with why; False when it is no longer waiting (cancelled, or prepared elsewhere)."""
    now = timezone.now()
    ended = Build.objects.filter(
        id=build.id, state=BuildState.QUEUED, pipeline_version__isnull=True
    ).update(state=BuildState.FAILED, error=error, started_at=now, finished_at=now)
    if ended:
        record_event(
            project_id=build.project_id,
            build_id=build.id,
            type=Event.Type.BUILD_STATE,
            old_state=BuildState.QUEUED,
            new_state=BuildState.FAILED,
            data={"error": error, **data},
        )
        send_build_state_changed(build=build, old=BuildState.QUEUED, new=BuildState.FAILED)
        build.state, build.error, build.finished_at = BuildState.FAILED, error, now
    return bool(ended)


def mark_build_running(*, build: Build) -> None:
    now = timezone.now()
    if Build.objects.filter(id=build.id, state=BuildState.QUEUED).update(
        state=BuildState.RUNNING, started_at=now
    ):
        record_event(
            project_id=build.project_id,
            build_id=build.id,
            type=Event.Type.BUILD_STATE,
            old_state=BuildState.QUEUED,
            new_state=BuildState.RUNNING,
        )
        send_build_state_changed(build=build, old=BuildState.QUEUED, new=BuildState.RUNNING)
        build.state, build.started_at = BuildState.RUNNING, now


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def cancel_build(*, user: Any, build: Build) -> Build:
    if user is not None:
        require_role(user=user, project=build.project, role=Role.EDITOR)
    if build.state in (BuildState.SUCCEEDED, BuildState.FAILED, BuildState.CANCELLED):
        raise Conflict(f"build #{build.id} already ended ({build.state})", state=build.state)
    record_action(
        actor=user,
        project=build.project,
        action="build.cancel",
        target=f"build {build.id}",
        detail=f"was {build.state}",
    )
    Build.objects.filter(id=build.id).update(cancel_requested=True)
    build.cancel_requested = True
    now = timezone.now()
    live = Task.objects.filter(build=build).exclude(state__in=list(TERMINAL))
    apply_transitions(
        project_id=build.project_id,
        changes=[
            Change(t, S(t.state), S.CANCELLED, {"finished_at": now, "error": "cancelled"})
            for t in live
        ],
    )
    return refresh_build_state(build=build)


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def retry_build(*, user: Any, build: Build) -> Build:
    """Re-run the failed, cancelled and upstream-failed tasks; successes stay."""
    if user is not None:
        require_role(user=user, project=build.project, role=Role.EDITOR)
    if build.files_purged:
        raise Conflict(
            f"build #{build.id} ended too long ago: retention removed its logs and artifacts, "
            "which its remaining tasks would need; trigger a new build",
            state=build.state,
        )
    if build.state not in (BuildState.FAILED, BuildState.CANCELLED):
        raise Conflict(
            f"only a failed or cancelled build can be retried; #{build.id} is {build.state}",
            state=build.state,
        )
    tasks = BuildTasks(build.id, everything=True)
    reset = [
        Change(
            t,
            S(t.state),
            S.PENDING,
            {
                "attempts": 0,
                "error": "",
                "finished_at": None,
                "started_at": None,
                "outputs": {},
                "artifacts": [],
                "deadline_missed": False,
            },
        )
        for t in tasks.values()
        if t.state in (S.FAILED, S.UPSTREAM_FAILED, S.CANCELLED)
    ]
    if not reset:
        raise Conflict("nothing to retry")
    record_action(
        actor=user,
        project=build.project,
        action="build.retry",
        target=f"build {build.id}",
        detail=f"was {build.state}, {len(reset)} task(s) again",
    )
    Build.objects.filter(id=build.id).update(
        state=BuildState.RUNNING, finished_at=None, cancel_requested=False
    )
    record_event(
        project_id=build.project_id,
        build_id=build.id,
        type=Event.Type.BUILD_STATE,
        old_state=build.state,
        new_state=BuildState.RUNNING,
        data={"retry": True},
    )
    send_build_state_changed(build=build, old=build.state, new=BuildState.RUNNING)
    build.state, build.finished_at, build.cancel_requested = BuildState.RUNNING, None, False
    apply_transitions(project_id=build.project_id, changes=reset)
    apply_transitions(
        project_id=build.project_id, changes=advance(build, tasks, roots_and_unblocked(tasks))
    )
    refresh_build_state(build=build)
    dispatch_on_commit(build.project_id)
    return build


# --- pools and cache --------------------------------------------------------------------
@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def set_pool(
    *, user: Any, project: Project, name: str, capacity: int, actor: Any = None
) -> ResourcePool:
    """user=None is the server; the admin passes who acts as `actor` (audit log)."""
    if user is not None:
        require_role(user=user, project=project, role=Role.MAINTAINER)
    check_pool(project=project, name=name, capacity=capacity)
    old = (
        ResourcePool.objects.filter(project=project, name=name)
        .values_list("capacity", flat=True)
        .first()
    )
    pool: ResourcePool = ResourcePool.objects.update_or_create(
        project=project, name=name, defaults={"capacity": capacity}
    )[0]
    record_action(
        actor=user if user is not None else actor,
        project=project,
        action="pool.set",
        target=f"pool {name}",
        detail=f"capacity {capacity}" + ("" if old is None else f" (was {old})"),
    )
    dispatch_on_commit(project.id)
    return pool


def check_pool(*, project: Project, name: str, capacity: int) -> None:
    """Refuse a pool that is badly named, negative, or too small for a task that is
    still to run: such a task could never start, and its build would never end."""
    if not re.match(POOL_PATTERN, name or ""):
        raise InvalidInput(
            [Problem("pool names use lower-case letters, digits, _ and -", where="name")]
        )
    if capacity < 0:
        raise InvalidInput([Problem("capacity cannot be negative", where="capacity")])
    lock_project(project.id)  # the lock trigger_build takes before checking claims
    if waiting := _open_tasks_claiming_more(project=project, pool=name, capacity=capacity):
        named = ", ".join(f"build {b} task '{t}' claims {n}" for b, t, n in waiting[:10])
        more = f" and {len(waiting) - 10} more" if len(waiting) > 10 else ""
        raise Conflict(
            f"pool '{name}' cannot shrink to {capacity}: {named}{more}; "
            "cancel those builds or wait for them to finish first"
        )


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def purge_cache(*, user: Any, project: Project, task_name: str | None = None) -> int:
    if user is not None:
        require_role(user=user, project=project, role=Role.MAINTAINER)
    purged = cache.purge(project_id=project.id, task_name=task_name)
    record_action(
        actor=user,
        project=project,
        action="cache.purge",
        target="cache",
        detail=f"{f'task {task_name}' if task_name else 'all tasks'}, "
        f"{purged} entr{'y' if purged == 1 else 'ies'} removed",
    )
    return purged


@transaction.atomic  # type: ignore[untyped-decorator]  # Django is untyped; keeps the signature
def purge_cache_entries(*, actor: Any, project: Project, keys: list[str]) -> int:
    """Purge chosen entries of one project (the admin's selection); `actor` is who."""
    purged = sum(cache.purge(project_id=project.id, key=key) for key in keys)
    record_action(
        actor=actor,
        project=project,
        action="cache.purge",
        target="cache",
        detail=f"{len(keys)} selected in the admin, "
        f"{purged} entr{'y' if purged == 1 else 'ies'} removed",
    )
    return purged
