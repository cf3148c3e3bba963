"""Settling ended attempts: record each end, unlock dependents, queue what became
ready, update the build.

A worker does not write its task's end itself: it returns a `TaskEnd` as its job's
result, and the cluster's monitor (`builds/monitor.py`) settles every end that arrived
meanwhile in one transaction, with one statement per kind of change instead of one
transaction per task. The reaper and the deadline check settle single tasks through
the same `finish_task`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from buildsite.models import Project
from tasks import rawsql
from tasks.models import Event, Task
from tasks.services import Change, EventRow, apply_transitions, write_events
from tasks.states import DONE_OK, BuildState, TaskState

from . import cache
from .attempts import Ending, TaskEnd, end_changes, end_is_current
from .dispatch import (
    dispatch_and_take,
    dispatch_ready_tasks,
    lock_project,
    pool_capacity,
    queue_jobs,
    with_queueing,
)
from .models import Build, ResourcePool
from .resolution import BuildTasks, advance, graph_of
from .services import lock_build, mark_build_running, refresh_build_state

S = TaskState


class TakenTask(NamedTuple):
    """The task a worker took to run next (with its build and project), the attempt
    claimed for it, and the capacity of its project's pools as the dispatch saw it."""

    task: Task
    attempt: int
    capacity: dict[str, int]


def settle_and_take(end: TaskEnd, *, project_id: int, worker: str) -> TakenTask | None:
    """A worker settles its own task's end and takes the best task the project's pools
    now admit, claimed for it, in one transaction (instead of the end's round trip
    through the monitor while the pools' capacity stands idle). Returns the task
    taken, if any.

    Tasks of the same build with nothing to run that the pools admit are the worker's
    as well: they hold their claims for no time, so it ends them at once, settles
    those ends and takes again in the same transaction, for up to STEPLESS_SECONDS (a
    transaction, its commit and the hand-over of the write lock per such task were
    most of their cost).
    """
    deadline = time.monotonic() + STEPLESS_SECONDS
    with transaction.atomic(savepoint=False):
        ends = [end]
        locked: set[int] = set()
        while True:
            settle(ends, dispatch=False, locked=locked)
            taken = dispatch_and_take(
                project_id=project_id,
                worker=worker,
                locked=locked,
                instant=time.monotonic() < deadline,
            )
            ends = [
                TaskEnd(task_id, attempt, S.SUCCEEDED, {}, claimed=False, worker=worker)
                for task_id, attempt in taken.instant
            ]
            if not ends:
                break
    if taken.task_id is None:
        return None
    # Claimed for this worker, so read after the commit, not while holding the locks.
    # Its build is RUNNING: taken only from a RUNNING build or from one settled here,
    # which the first start of any of its tasks marked RUNNING (`finish_tasks`).
    task = load_tasks([taken.task_id], with_projects=True)[taken.task_id]
    return TakenTask(task, taken.attempt, taken.capacity)


# How long a worker goes on taking and ending tasks with nothing to run in one
# transaction, which holds the database's write lock (SQLite) or the project's lock.
STEPLESS_SECONDS = 0.05


def settle(
    ends: list[TaskEnd],
    *,
    then: Callable[[], Any] | None = None,
    dispatch: bool = True,
    locked: set[int] | None = None,
) -> int:
    """Record reported ends in one transaction (with `then`, e.g. acknowledging their
    jobs, inside it); returns how many were recorded. An end whose task moved on
    meanwhile (cancelled, or reaped and run again) is dropped. Without `dispatch`,
    the caller dispatches (in the same transaction). The ids of the builds locked are
    added to `locked`."""
    with transaction.atomic(savepoint=False):
        by_build: dict[int, list[Ending]] = {}
        builds: dict[int, Build] = {}
        seen: set[int] = set()
        tasks = load_tasks([e.task_id for e in ends], SETTLE_COLUMNS) if ends else {}
        write_logs(ends, tasks)
        for end in ends:
            task = tasks.get(end.task_id)
            if task is None or end.task_id in seen or not end_is_current(end, task):
                continue
            seen.add(end.task_id)
            builds[task.build_id] = task.build
            by_build.setdefault(task.build_id, []).append(
                Ending(
                    task=task,
                    outcome=TaskState(end.outcome),
                    outputs=end.outputs,
                    error=end.error,
                    claim=None if end.claimed else end.attempt,
                    worker=end.worker,
                    interrupted=end.interrupted,
                    artifacts=list(end.artifacts),
                )
            )
        settled = 0
        pools = PoolWork()
        for build_id in sorted(by_build):  # one lock order for every settler
            lock_build(builds[build_id])
            if locked is not None:
                locked.add(build_id)
            settled += finish_tasks(build=builds[build_id], endings=by_build[build_id], pools=pools)
        pools.apply(dispatch=dispatch)
        if then is not None:
            then()
    return settled


class PoolWork:
    """What the ends of a settling transaction did to their projects' pools: busy time
    to add, and whether to dispatch (a task became READY, or capacity came back). Done
    once per project after every build was settled, under the project's lock: every
    settler locks its builds first (in id order) and the project after them, never the
    other way round, so a worker settling its own end beside the monitor cannot
    deadlock with it on PostgreSQL."""

    def __init__(self) -> None:
        self.now = timezone.now()
        self.capacity: dict[int, dict[str, int]] = {}
        self.held: dict[int, list[Task]] = {}
        self.ready: set[int] = set()

    def add(
        self, project_id: int, capacity: dict[str, int], ended: list[Task], newly_ready: int
    ) -> None:
        if not capacity:
            return
        self.capacity[project_id] = capacity
        self.held.setdefault(project_id, []).extend(ended)
        if newly_ready:
            self.ready.add(project_id)

    def apply(self, *, dispatch: bool = True) -> None:
        for project_id in sorted(self.capacity):
            capacity = self.capacity[project_id]  # which pools to count busy time in
            lock_project(project_id)
            freed = False
            for task in self.held[project_id]:
                freed |= _account_usage(task, project_id, self.now, capacity)
            # Dispatch only when something can have changed (due retries are upkeep's).
            if dispatch and (freed or project_id in self.ready):
                dispatch_ready_tasks(project_id=project_id)


def write_logs(ends: list[TaskEnd], tasks: dict[int, Task]) -> None:
    """The last output of each attempt, as its `log` event (once, even for an end that
    came twice or whose task moved on: the output was written either way)."""
    now = timezone.now()
    rows: dict[tuple[int, int], EventRow] = {}
    for end in ends:
        task = tasks.get(end.task_id)
        if end.log and task is not None:
            rows[(end.task_id, end.attempt)] = EventRow(
                task.build.project_id, task.build_id, task.id, task.name, Event.Type.LOG,
                "", "", {"text": end.log, "attempt": end.attempt}, now,
            )  # fmt: skip
    write_events(list(rows.values()))


def finish_task(
    *, task: Task, build: Build, outcome: TaskState, outputs: dict[str, Any], error: str = ""
) -> bool:
    """Record one end now, from the state `task` was read in (reaper, deadlines)."""
    with transaction.atomic(savepoint=False):
        lock_build(build)
        ending = Ending(task=task, outcome=outcome, outputs=outputs, error=error)
        return bool(finish_tasks(build=build, endings=[ending]))


def finish_tasks(*, build: Build, endings: list[Ending], pools: PoolWork | None = None) -> int:
    """Record ends of tasks of one build, unlock their dependents and queue what is
    ready, in the caller's transaction (which holds the build's lock). With `pools`,
    what concerns the project's pools is left to the caller (`PoolWork.apply`). Returns
    how many ends were recorded."""
    now = timezone.now()
    steps: list[Change] = []
    for ending in endings:
        steps.extend(end_changes(ending, now))
    applied = apply_transitions(project_id=build.project_id, changes=steps)
    moved = {c.task.id for c in applied}
    ended = [e for e in endings if e.task.id in moved]
    if not ended:
        return 0
    if build.state == BuildState.QUEUED and any(e.claim is not None for e in ended):
        mark_build_running(build=build)
    stored = sum(f["size"] for e in ended if e.outcome == S.SUCCEEDED for f in e.artifacts)
    if stored:
        Build.objects.filter(id=build.id).update(artifact_bytes=F("artifact_bytes") + stored)
    capacity = pool_capacity(build.project_id)
    for ending in ended:
        if ending.outcome == S.SUCCEEDED and ending.task.cache_key:
            cache.store(
                project_id=build.project_id,
                key=ending.task.cache_key,
                task_name=ending.task.name,
                outputs=ending.outputs,
                artifacts=ending.artifacts,
            )
    finished = [e.task for e in ended if e.outcome != S.RETRYING]
    newly_ready = unlock_dependents(build=build, finished=finished, queue_now=not capacity)
    refresh_build_state(build=build)
    own = pools is None
    pools = PoolWork() if pools is None else pools
    pools.add(build.project_id, capacity, [e.task for e in ended], newly_ready)
    if own:
        pools.apply()
    return len(ended)


def _account_usage(task: Task, project_id: int, now: datetime, capacity: dict[str, int]) -> bool:
    """Add the attempt's busy time to its pools; True when it held any pool's capacity."""
    if not task.started_at or not task.claims or not capacity:
        return False
    seconds = (now - task.started_at).total_seconds()
    held = False
    sql = (
        f"UPDATE {rawsql.table(ResourcePool)} SET busy_seconds = busy_seconds + %s "
        "WHERE project_id = %s AND name = %s"
    )
    for pool, amount in task.claims.items():
        if amount and pool in capacity:
            held |= bool(rawsql.execute(sql, [amount * seconds, project_id, pool]))
    return held


def unlock_dependents(*, build: Build, finished: list[Task], queue_now: bool = False) -> int:
    """Move the dependents of finished tasks on; returns how many became READY.
    With `queue_now` (a project without pools) those go on to QUEUED with their jobs."""
    needs_of, children, _ = graph_of(build.pipeline_version_id)
    kids = list(dict.fromkeys(kid for task in finished for kid in children[task.name]))
    if not kids:
        return 0
    if all(task.state in DONE_OK for task in finished):
        near = set(kids) | {n for kid in kids for n in needs_of[kid]}
        tasks = BuildTasks(build.id, preload=list(near))
    else:
        tasks = BuildTasks(build.id, everything=True)
    for task in finished:
        tasks[task.name] = task
    changes = advance(build, tasks, kids)
    if queue_now:
        changes = with_queueing(changes, timezone.now())
    applied = apply_transitions(project_id=build.project_id, changes=changes)
    if queue_now:
        queue_jobs(applied)
    return sum(1 for c in applied if c.new == S.READY)


# What settling reads of a task: the other columns stay deferred (and would be read on
# first use); decoding whole rows was a third of the monitor's time per task.
SETTLE_COLUMNS = (
    "id",
    "build_id",
    "name",
    "state",
    "attempts",
    "max_retries",
    "needs",
    "outputs",
    "cache_key",
    "artifacts",
    "claims",
    "started_at",
)


@lru_cache(maxsize=16)
def _select(model: type[models.Model], columns: tuple[str, ...]) -> str:
    # mypy does not count a model class as Hashable (python/mypy#17730), hence the ignores.
    names = ", ".join(rawsql.col(model, c) for c in columns)  # type: ignore[arg-type]
    return f"SELECT {names} FROM {rawsql.table(model)} WHERE id IN "  # type: ignore[arg-type]


def _load(model: type[models.Model], ids: list[int], columns: tuple[str, ...]) -> list[Any]:
    # Model.from_db takes a subset of columns in the model's own field order.
    columns = tuple(c for c in _all_columns(model) if c in columns)  # type: ignore[arg-type]
    select = _select(model, columns)  # type: ignore[arg-type]
    rows = rawsql.fetch(f"{select}({rawsql.marks(len(ids))})", ids)
    return [model.from_db("default", columns, v) for v in rawsql.from_db(model, columns, rows)]


@lru_cache(maxsize=16)
def _all_columns(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in model._meta.concrete_fields)


def load_tasks(
    task_ids: list[int], columns: tuple[str, ...] | None = None, *, with_projects: bool = False
) -> dict[int, Task]:
    """Tasks by id (all columns, or `columns`), each with its build (and the build's
    project, when asked), one plain query per model; a build or project shared by
    several tasks is one instance."""
    ids = list(dict.fromkeys(task_ids))
    tasks = _load(Task, ids, columns or _all_columns(Task)) if ids else []
    build_ids = list(dict.fromkeys(t.build_id for t in tasks))
    builds = {b.id: b for b in _load(Build, build_ids, _all_columns(Build))} if tasks else {}
    if with_projects and builds:
        project_ids = list(dict.fromkeys(b.project_id for b in builds.values()))
        projects = {p.id: p for p in _load(Project, project_ids, _all_columns(Project))}
        for build in builds.values():
            build.project = projects[build.project_id]
    for task in tasks:
        task.build = builds[task.build_id]
    return {task.id: task for task in tasks}
