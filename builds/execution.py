"""The worker side of a task: claim it, keep its lease, run its steps, record the end."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from buildsite.errors import DomainError
from buildsite.templating import render_value
from tasks import rawsql
from tasks.models import Event, Task
from tasks.services import Change, apply_transitions, record_event, transition
from tasks.states import BuildState, TaskState

from . import cache
from .dispatch import dispatch_ready_tasks, pool_capacity, queue_jobs, with_queueing
from .models import Build, ResourcePool
from .resolution import (
    BuildTasks,
    advance,
    graph_of,
    task_spec,
    template_context,
    workspace_of,
)
from .services import mark_build_running, refresh_build_state
from .steps import StepCancelled, StepContext, StepFailed, executor_for

log = logging.getLogger(__name__)
S = TaskState
STEP_KINDS = ("run", "prompt", "document")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def log_path(build_id: int, task_name: str) -> Path:
    return Path(settings.BUILDSITE["LOG_DIR"]) / str(build_id) / f"{task_name}.log"


class TaskLog:
    """Appends to the task's log file at once (so the log endpoint grows while the task
    runs) and batches the same text into `log` events for live viewers."""

    FLUSH_SECONDS = 0.25
    FLUSH_BYTES = 16_384

    def __init__(self, task: Task, project_id: int) -> None:
        self.task = task
        self.project_id = project_id
        path = log_path(task.build_id, task.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", encoding="utf-8")
        self.pending: list[str] = []
        self.pending_len = 0
        self.last_flush = time.monotonic()
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            self.file.write(text)
            self.file.flush()
            self.pending.append(text)
            self.pending_len += len(text)
            due = self.pending_len >= self.FLUSH_BYTES
        if due:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            if not self.pending:
                return
            text, self.pending, self.pending_len = "".join(self.pending), [], 0
            self.last_flush = time.monotonic()
        record_event(
            project_id=self.project_id,
            type=Event.Type.LOG,
            task=self.task,
            data={"text": text, "attempt": self.task.attempts},
        )

    def flush_if_due(self) -> None:
        if time.monotonic() - self.last_flush >= self.FLUSH_SECONDS:
            self.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()


class Heartbeat(threading.Thread):
    """Renews the lease, notices cancellation (the row left RUNNING) and flushes log
    events, until stopped."""

    def __init__(self, task: Task, attempt: int, task_log: TaskLog) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{task.id}")
        self.task_id = task.id
        self.attempt = attempt
        self.task_log = task_log
        self.stopped = threading.Event()
        self.lost = threading.Event()
        self.interval = settings.BUILDSITE["HEARTBEAT_SECONDS"]
        self.lease = settings.BUILDSITE["LEASE_SECONDS"]

    def run(self) -> None:
        last_renew = time.monotonic()
        try:
            while not self.stopped.wait(min(self.interval, TaskLog.FLUSH_SECONDS)):
                self.task_log.flush_if_due()
                mine = Task.objects.filter(id=self.task_id, state=S.RUNNING, attempts=self.attempt)
                if time.monotonic() - last_renew >= self.lease / 3:
                    alive = mine.update(
                        lease_expires_at=timezone.now() + timedelta(seconds=self.lease)
                    )
                    last_renew = time.monotonic()
                else:
                    alive = mine.exists()
                if not alive:
                    self.lost.set()
                    return
        except Exception:
            log.warning("heartbeat of task %s failed", self.task_id, exc_info=True)
        finally:
            connection.close()


@lru_cache(maxsize=1)
def _load_statement() -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    task_cols = tuple(f.attname for f in Task._meta.concrete_fields)
    build_cols = tuple(f.attname for f in Build._meta.concrete_fields)
    sql = "SELECT {}, {} FROM {} t JOIN {} b ON b.id = t.build_id WHERE t.id = %s".format(
        ", ".join(f"t.{rawsql.col(Task, c)}" for c in task_cols),
        ", ".join(f"b.{rawsql.col(Build, c)}" for c in build_cols),
        rawsql.table(Task),
        rawsql.table(Build),
    )
    return sql, task_cols, build_cols


def load_task(task_id: int) -> Task | None:
    """The task with its build, in one plain query (this runs for every job)."""
    sql, task_cols, build_cols = _load_statement()
    rows = rawsql.fetch(sql, [task_id])
    if not rows:
        return None
    split = len(task_cols)
    (task_values,) = rawsql.from_db(Task, task_cols, [rows[0][:split]])
    (build_values,) = rawsql.from_db(Build, build_cols, [rows[0][split:]])
    task = Task.from_db("default", task_cols, task_values)
    task.build = Build.from_db("default", build_cols, build_values)
    return task


def execute_task(*, task_id: int, attempt: int) -> str:
    """Run one attempt of a task. Returns what happened (for django-q2's result)."""
    close_old_connections()
    task = load_task(task_id)
    if task is None or task.state != S.QUEUED or task.attempts != attempt - 1:
        return "skipped: not queued for this attempt"
    build = task.build
    if not task_spec(build, task.name).get("steps"):
        # Nothing to run: start and end in one transaction, one write lock instead of two
        # (the events still show queued -> running -> succeeded).
        started = finish_task(
            task=task, build=build, outcome=S.SUCCEEDED, outputs={}, claim=attempt
        )
        return "succeeded" if started else "skipped: claimed elsewhere"
    with transaction.atomic(savepoint=False):
        if not _claim(task, build, attempt):
            return "skipped: claimed elsewhere"
    task_log = TaskLog(task, build.project_id)
    if attempt > 1:
        task_log.write(f"--- attempt {attempt} ---\n")
    heartbeat = Heartbeat(task, attempt, task_log)
    heartbeat.start()
    try:
        outcome, outputs, error = _run_steps(task, build, task_log, heartbeat)
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=10)
        task_log.close()
    if outcome == S.CANCELLED:
        return "cancelled"
    if outcome == S.FAILED:
        outcome = failure_outcome(task)
    finish_task(task=task, build=build, outcome=outcome, outputs=outputs, error=error)
    return str(outcome)


def _claim_step(task: Task, attempt: int, now) -> Change:
    fields = {
        "attempts": attempt,
        "started_at": now,
        "worker": worker_id(),
        "lease_expires_at": now + timedelta(seconds=settings.BUILDSITE["LEASE_SECONDS"]),
        "error": "",
    }
    return Change(task, S.QUEUED, S.RUNNING, fields, {"attempt": attempt, "worker": worker_id()})


def _claim(task: Task, build: Build, attempt: int) -> bool:
    """QUEUED -> RUNNING with a fresh lease; False when another worker was first."""
    step = _claim_step(task, attempt, timezone.now())
    claimed = transition(
        task=task,
        to=S.RUNNING,
        project_id=build.project_id,
        strict=False,
        fields=step.fields,
        data=step.data,
    )
    if claimed and build.state == BuildState.QUEUED:
        mark_build_running(build=build)
    return claimed


def lock_build(build: Build) -> None:
    """One finish at a time per build (PostgreSQL; SQLite's IMMEDIATE transaction
    already holds the only write lock): under READ COMMITTED, two parents finishing
    together could each miss the other and leave their child PENDING."""
    if connection.features.has_select_for_update:
        rawsql.fetch(f"SELECT id FROM {rawsql.table(Build)} WHERE id = %s FOR UPDATE", [build.id])


def _run_steps(task: Task, build: Build, task_log: TaskLog, heartbeat: Heartbeat):
    spec = task_spec(build, task.name)
    workspace = workspace_of(build.id)
    workspace.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + float(
        spec.get("timeout") or settings.BUILDSITE["STEP_TIMEOUT_SECONDS"]
    )
    tasks = BuildTasks(build.id, preload=list(task.needs))
    context = template_context(build, task, tasks)
    outputs: dict[str, Any] = {}
    try:
        env = render_value(spec.get("env", {}), context)
    except DomainError as exc:
        task_log.write(f"error: {exc.message}\n")
        return S.FAILED, outputs, exc.message
    for index, raw_step in enumerate(spec["steps"]):
        kind = next(k for k in STEP_KINDS if k in raw_step)
        where = f"steps[{index}]"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _fail(task_log, outputs, f"task timed out before {where}")
        ctx = StepContext(
            project=build.project,
            build=build,
            task=task,
            workspace=workspace,
            env=env,
            timeout=remaining,
            log=task_log.write,
            should_stop=heartbeat.lost.is_set,
            outputs=outputs,
        )
        try:
            step = render_value(raw_step, context, where=where)
            outputs.update(executor_for(kind)(step, ctx))
        except StepCancelled:
            task_log.write("cancelled\n")
            return S.CANCELLED, outputs, "cancelled"
        except StepFailed as exc:
            outputs.update(exc.outputs)
            if heartbeat.lost.is_set():
                return S.CANCELLED, outputs, "cancelled"
            return _fail(task_log, outputs, f"{where} ({kind}) failed: {exc}")
        except DomainError as exc:
            return _fail(task_log, outputs, f"{where} ({kind}): {exc.message}")
        except Exception as exc:  # a bug in a step kind must still end the task
            task_log.write(traceback.format_exc())
            return _fail(
                task_log, outputs, f"{where} ({kind}): internal error {type(exc).__name__}"
            )
        context["task"]["outputs"] = outputs
        if heartbeat.lost.is_set():
            return S.CANCELLED, outputs, "cancelled"
    return S.SUCCEEDED, outputs, ""


def _fail(task_log: TaskLog, outputs: dict, message: str):
    task_log.write(f"error: {message}\n")
    return S.FAILED, outputs, message


def failure_outcome(task: Task) -> TaskState:
    """After a failed or lost attempt: another try while retries remain."""
    return S.RETRYING if task.attempts <= task.max_retries else S.FAILED


def backoff_seconds(attempt: int) -> float:
    base = settings.BUILDSITE["RETRY_BACKOFF_SECONDS"]
    return min(base * 2 ** max(0, attempt - 1), settings.BUILDSITE["RETRY_BACKOFF_MAX_SECONDS"])


def finish_task(
    *,
    task: Task,
    build: Build,
    outcome: TaskState,
    outputs: dict,
    error: str = "",
    claim: int | None = None,
) -> bool:
    """Record the end of an attempt, unlock dependents, then dispatch what is ready.

    With `claim` (an attempt number), the QUEUED task is started and ended at once:
    a task with nothing to run takes both steps in one conditional UPDATE, with both
    events, instead of two transactions."""
    now = timezone.now()
    fields: dict[str, Any] = {"outputs": outputs, "error": error, "lease_expires_at": None}
    if outcome == S.RETRYING:
        fields["not_before"] = now + timedelta(seconds=backoff_seconds(task.attempts))
    else:
        fields["finished_at"] = now
    with transaction.atomic(savepoint=False):
        lock_build(build)
        data = {"error": error} if error else None
        if claim is not None:
            end = Change(task, S.RUNNING, outcome, fields, data)
            steps = [_claim_step(task, claim, now), end]  # started and ended at `now`
            if not apply_transitions(project_id=build.project_id, changes=steps):
                return False
            if build.state == BuildState.QUEUED:
                mark_build_running(build=build)
        elif not transition(
            task=task,
            to=outcome,
            project_id=build.project_id,
            fields=fields,
            strict=False,
            data=data,
        ):
            return False
        # Read before the project lock: a pool created meanwhile applies from the next
        # dispatch on.
        capacity = pool_capacity(build.project_id)
        freed_capacity = _account_usage(task, now, capacity)
        if outcome == S.SUCCEEDED and task.cache_key:
            cache.store(
                project_id=build.project_id,
                key=task.cache_key,
                task_name=task.name,
                outputs=outputs,
            )
        newly_ready = 0
        if outcome != S.RETRYING:
            newly_ready = unlock_dependents(build=build, task=task, queue_now=not capacity)
        refresh_build_state(build=build)
        # With pools, dispatch only when something can have changed: a task became
        # READY, or pool capacity was given back (due retries are the ticker's). In the
        # same transaction: one write lock per finished task, not two.
        if capacity and (newly_ready or freed_capacity):
            dispatch_ready_tasks(project_id=build.project_id, capacity=capacity)
    return True


def _account_usage(task: Task, now, capacity: dict[str, int]) -> bool:
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
            held |= bool(rawsql.execute(sql, [amount * seconds, task.build.project_id, pool]))
    return held


def unlock_dependents(*, build: Build, task: Task, queue_now: bool = False) -> int:
    """Move the dependents of a finished task on; returns how many became READY.
    With `queue_now` (a project without pools) those go on to QUEUED with their jobs."""
    _, children, _ = graph_of(build.pipeline_version_id)
    kids = children[task.name]
    if not kids:
        return 0
    if task.state in (S.SUCCEEDED, S.CACHED):
        needed = {n for kid in kids for n in task_needs(build, kid)}
        tasks = BuildTasks(build.id, preload=list(set(kids) | needed))
    else:
        tasks = BuildTasks(build.id, everything=True)
    tasks[task.name] = task
    changes = advance(build, tasks, kids)
    if queue_now:
        changes = with_queueing(changes, timezone.now())
    applied = apply_transitions(project_id=build.project_id, changes=changes)
    if queue_now:
        queue_jobs(applied)
    return sum(1 for c in applied if c.new == S.READY)


def task_needs(build: Build, name: str) -> list[str]:
    needs, _, _ = graph_of(build.pipeline_version_id)
    return list(needs[name])
