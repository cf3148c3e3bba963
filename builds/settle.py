"""Settling ended attempts: record each end, unlock dependents, queue what became
ready, update the build.

A worker does not write its task's end itself: it returns a `TaskEnd` as its job's
result, and the cluster's monitor (`builds/monitor.py`) settles every end that arrived
meanwhile in one transaction, with one statement per kind of change instead of one
transaction per task. The reaper and the deadline check settle single tasks through
the same `finish_task`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from buildsite.models import Project
from tasks import rawsql
from tasks.models import Event, Task
from tasks.services import Change, EventRow, apply_transitions, events_in_one_insert, write_events
from tasks.states import DONE_OK, BuildState, TaskState

from . import cache
from .attempts import Ending, TaskEnd, end_changes, end_is_current
from .dispatch import (
    Held,
    dispatch_and_take,
    dispatch_ready_tasks,
    locked_capacity,
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


def settle_and_take(
    end: TaskEnd, *, project_id: int, worker: str, capacity: dict[str, int]
) -> TakenTask | None:
    """A worker settles its own task's end and takes the best task the project's pools
    now admit, claimed for it, in one transaction (instead of the end's round trip
    through the monitor while the pools' capacity stands idle). Returns the task
    taken, if any.

    Tasks of the same build with nothing to run that the pools admit are the worker's
    as well: they hold their claims for no time, so it ends them at once, settles
    those ends and takes again in the same transaction, for up to STEPLESS_SECONDS (a
    transaction, its commit and the hand-over of the write lock per such task were
    most of their cost).

    `capacity` is the project's pools as the worker last saw them: enough to know
    that it has pools (what counts is read again under the project's lock).
    """
    deadline = time.monotonic() + STEPLESS_SECONDS
    with transaction.atomic(savepoint=False), events_in_one_insert():
        ends = [end]
        held = Held()
        while True:
            known = {project_id: held.capacity.get(project_id, capacity)}
            settle(ends, dispatch=False, held=held, known_capacity=known)
            taken = dispatch_and_take(
                project_id=project_id,
                worker=worker,
                held=held,
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
    held: Held | None = None,
    known_capacity: Mapping[int, dict[str, int]] | None = None,
) -> int:
    """Record reported ends in one transaction (with `then`, e.g. acknowledging their
    jobs, inside it); returns how many were recorded. An end whose task moved on
    meanwhile (cancelled, or reaped and run again) is dropped. Without `dispatch`,
    the caller dispatches (in the same transaction). What was locked is added to
    `held`. `known_capacity`: pools of projects as the caller read them recently,
    to know which have any (read here otherwise)."""
    with transaction.atomic(savepoint=False), events_in_one_insert():
        by_build: dict[int, list[Ending]] = {}
        builds: dict[int, Build] = {}
        seen: set[int] = set()
        pooled: set[int] = set()
        task_ids = [e.task_id for e in ends]
        tasks = load_tasks(task_ids, SETTLE_COLUMNS, projects_with_pools=pooled) if ends else {}
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
        held = Held() if held is None else held
        pools = PoolWork(held)
        capacity = dict(known_capacity or {})
        for build_id in sorted(by_build):  # one lock order for every settler
            build = builds[build_id]
            lock_build(build)
            held.builds.add(build_id)
            # Whether the project has pools came with its tasks, before the build's
            # lock (as a worker settling its own end goes by the capacity it last saw);
            # what counts is read again under the project's lock. So a project's first
            # pool, created while this reads or waits for the lock, may see this settle
            # queue the tasks it made READY without it, once: the pool holds back what
            # is dispatched after that. A statement fewer per settle without pools.
            if build.project_id not in capacity:
                has_pools = build.project_id in pooled
                capacity[build.project_id] = pool_capacity(build.project_id) if has_pools else {}
            settled += finish_tasks(
                build=build,
                endings=by_build[build_id],
                pools=pools,
                capacity=capacity[build.project_id],
            )
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

    def __init__(self, held: Held | None = None) -> None:
        self.now = timezone.now()
        self.locks = Held() if held is None else held
        self.ended: dict[int, list[Task]] = {}
        self.ready: set[int] = set()

    def add(
        self, project_id: int, capacity: dict[str, int], ended: list[Task], newly_ready: int
    ) -> None:
        if not capacity:
            return
        self.ended.setdefault(project_id, []).extend(ended)
        if newly_ready:
            self.ready.add(project_id)

    def apply(self, *, dispatch: bool = True) -> None:
        for project_id in sorted(self.ended):
            busy = _busy_seconds(self.ended[project_id], self.now)
            # Pools that no longer exist are not in `capacity`: nothing of theirs freed.
            capacity = locked_capacity(project_id, self.locks, busy=busy)
            freed = any(pool in capacity for pool in busy)
            # Dispatch only when something can have changed (due retries are upkeep's).
            if dispatch and (freed or project_id in self.ready):
                dispatch_ready_tasks(project_id=project_id, held=self.locks)


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


def finish_tasks(
    *,
    build: Build,
    endings: list[Ending],
    pools: PoolWork | None = None,
    capacity: dict[str, int] | None = None,
) -> int:
    """Record ends of tasks of one build, unlock their dependents and queue what is
    ready, in the caller's transaction (which holds the build's lock). With `pools`,
    what concerns the project's pools is left to the caller (`PoolWork.apply`);
    `capacity`, the project's pools as read recently, says whether it has any (read
    here when not given). Returns how many ends were recorded."""
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
    if capacity is None:
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
    # A task left waiting to run, or one to retry, is open: the build has not finished.
    open_now = newly_ready or any(e.outcome == S.RETRYING for e in ended)
    refresh_build_state(build=build, known_open=bool(open_now))
    own = pools is None
    pools = PoolWork() if pools is None else pools
    pools.add(build.project_id, capacity, [e.task for e in ended], newly_ready)
    if own:
        pools.apply()
    return len(ended)


def _busy_seconds(ended: list[Task], now: datetime) -> dict[str, float]:
    """Claim x seconds of the attempts that ended, by pool name: the pools' busy time."""
    busy: dict[str, float] = {}
    for task in ended:
        if not task.started_at or not task.claims:
            continue
        seconds = (now - task.started_at).total_seconds()
        for pool, amount in task.claims.items():
            if amount:
                busy[pool] = busy.get(pool, 0.0) + amount * seconds
    return busy


def unlock_dependents(*, build: Build, finished: list[Task], queue_now: bool = False) -> int:
    """Move the dependents of finished tasks on; returns how many are now waiting to
    run (READY, or with `queue_now`, for a project without pools, QUEUED with their
    jobs): not those that went on to CACHED or UPSTREAM_FAILED in the same walk."""
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
    final = {c.task.id: c.new for c in applied}  # a task's last step is its state now
    return sum(1 for state in final.values() if state in (S.READY, S.QUEUED))


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
def _all_columns(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in model._meta.concrete_fields)


@lru_cache(maxsize=16)
def _select(
    columns: tuple[str, ...], with_projects: bool, with_pools: bool = False
) -> tuple[str, tuple[str, ...]]:
    """The statement reading tasks by id with their builds (and projects) in one round
    trip, and the task columns it reads, in field order; `with_pools`: and last,
    whether the build's project has resource pools."""
    # Model.from_db takes a subset of columns in the model's own field order.
    task_columns = tuple(c for c in _all_columns(Task) if c in columns)
    parts = [
        ("t", task_columns, Task),
        ("b", _all_columns(Build), Build),
    ]
    if with_projects:
        parts.append(("p", _all_columns(Project), Project))
    names = ", ".join(
        f"{alias}.{rawsql.col(model, c)}" for alias, cols, model in parts for c in cols
    )
    if with_pools:
        pools = rawsql.table(ResourcePool)
        names += f", EXISTS (SELECT 1 FROM {pools} x WHERE x.project_id = b.project_id)"
    sql = (
        f"SELECT {names} FROM {rawsql.table(Task)} t "
        f"JOIN {rawsql.table(Build)} b ON b.id = t.build_id "
    )
    if with_projects:
        sql += f"JOIN {rawsql.table(Project)} p ON p.id = b.project_id "
    return sql + "WHERE t.id IN ", task_columns


def load_tasks(
    task_ids: list[int],
    columns: tuple[str, ...] | None = None,
    *,
    with_projects: bool = False,
    projects_with_pools: set[int] | None = None,
) -> dict[int, Task]:
    """Tasks by id (all columns, or `columns`), each with its build (and the build's
    project, when asked), in one plain query; a build or project shared by several
    tasks is one instance. With `projects_with_pools`, the ids of those of their
    projects that have resource pools are added to it (read in the same query)."""
    ids = list(dict.fromkeys(task_ids))
    if not ids:
        return {}
    with_pools = projects_with_pools is not None
    select, task_columns = _select(columns or _all_columns(Task), with_projects, with_pools)
    rows = rawsql.fetch(f"{select}({rawsql.marks(len(ids))})", ids)
    if projects_with_pools is not None:  # the flag is the last column
        project_at = len(task_columns) + _all_columns(Build).index("project_id")
        projects_with_pools.update(row[project_at] for row in rows if row[-1])
        rows = [row[:-1] for row in rows]
    task_end = len(task_columns)
    build_end = task_end + len(_all_columns(Build))
    builds: dict[int, Build] = {}
    projects: dict[int, Project] = {}
    tasks: dict[int, Task] = {}
    for row in rows:
        build = _instance(Build, row[task_end:build_end], builds)
        if with_projects:
            build.project = _instance(Project, row[build_end:], projects)
        task = _instance(Task, row[:task_end], tasks, task_columns)
        task.build = build
    return tasks


def _instance(
    model: type[Any], values: Any, seen: dict[int, Any], columns: tuple[str, ...] | None = None
) -> Any:
    """The `model` instance of `values` (all its columns, or `columns`), once per id."""
    found = seen.get(values[0])
    if found is None:
        columns = columns or _all_columns(model)  # type: ignore[arg-type]  # mypy#17730
        (converted,) = rawsql.from_db(model, columns, [values])
        found = seen[values[0]] = model.from_db("default", columns, converted)
    return found
