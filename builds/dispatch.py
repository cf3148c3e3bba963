"""Dispatch: READY (and due RETRYING) tasks to django-q2, in scheduling order, within
the project's resource pools."""

from __future__ import annotations

import logging
from collections import Counter

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from buildsite.models import Project
from tasks.models import Task
from tasks.services import Change, apply_transitions
from tasks.states import TaskState

from .models import ResourcePool
from .scheduling import Candidate, choose

log = logging.getLogger(__name__)
S = TaskState
CANDIDATE_LIMIT = 1000
JOB = "builds.jobs.run_task"


def enqueue(task_ids_and_attempts: list[tuple[int, int]]) -> None:
    for task_id, attempt in task_ids_and_attempts:
        async_task(JOB, task_id, attempt, task_name=f"task-{task_id}-{attempt}", save=False)


def jobs_are_transactional() -> bool:
    """True for django-q2's ORM broker (not Redis, and not when jobs run inline, where a
    job would start inside the transaction that queued it)."""
    from django_q.conf import Conf

    return bool(Conf.ORM) and not Conf.SYNC


def dispatch_on_commit(project_id: int) -> None:
    transaction.on_commit(lambda: dispatch_ready_tasks(project_id=project_id))


def dispatch_ready_tasks(*, project_id: int | None = None) -> int:
    """Queue what may run now; returns how many tasks were queued. Safe to call from
    any number of processes: the project row is locked (PostgreSQL) or the database is
    (SQLite IMMEDIATE), and each move is a conditional update."""
    now = timezone.now()
    due_retry = Task.objects.filter(state=S.RETRYING, not_before__lte=now)
    if project_id is None:
        project_ids = set(
            Task.objects.filter(state=S.READY)
            .values_list("build__project_id", flat=True)
            .distinct()
        ) | set(due_retry.values_list("build__project_id", flat=True).distinct())
    else:
        project_ids = {project_id}
    queued = 0
    for pid in sorted(project_ids):
        queued += _dispatch_project(pid, now)
    return queued


def _dispatch_project(project_id: int, now) -> int:
    to_enqueue: list[tuple[int, int]] = []
    with transaction.atomic(savepoint=False):
        if connection.features.has_select_for_update:
            # Serialises dispatchers of one project, so pools are never over-committed.
            # SQLite needs no lock: its IMMEDIATE transactions already run one at a time.
            Project.objects.select_for_update().filter(id=project_id).exists()
        fields = (
            "id",
            "build_id",
            "name",
            "state",
            "priority",
            "claims",
            "deadline",
            "ready_at",
            "not_before",
            "attempts",
        )
        in_project = Task.objects.filter(build__project_id=project_id)
        due = Q(state=S.READY) | Q(state=S.RETRYING, not_before__lte=now)
        waiting = list(
            in_project.filter(due).only(*fields).order_by("-priority", "id")[:CANDIDATE_LIMIT]
        )
        if not waiting:
            return 0
        capacity = dict(
            ResourcePool.objects.filter(project_id=project_id).values_list("name", "capacity")
        )
        in_use: Counter[str] = Counter()
        if capacity:
            active = in_project.filter(state__in=[S.QUEUED, S.RUNNING]).values_list(
                "claims", flat=True
            )
            for claims in active:
                in_use.update({p: n for p, n in (claims or {}).items() if p in capacity})
        by_id = {t.id: t for t in waiting}
        decision = choose(
            [
                Candidate(
                    id=t.id,
                    priority=t.priority,
                    waiting_since=((t.not_before or t.ready_at) or now).timestamp(),
                    claims=t.claims or {},
                    deadline=t.deadline.timestamp() if t.deadline else None,
                )
                for t in waiting
            ],
            capacity=capacity,
            in_use=in_use,
            now=now.timestamp(),
            aging_per_minute=settings.BUILDSITE["AGING_PER_MINUTE"],
        )
        applied = apply_transitions(
            project_id=project_id,
            changes=[
                Change(by_id[i], S(by_id[i].state), S.QUEUED, {"queued_at": now})
                for i in decision.dispatch
            ],
        )
        to_enqueue = [(c.task.id, c.task.attempts + 1) for c in applied]
        if to_enqueue and jobs_are_transactional():
            # The ORM broker's jobs are rows: written in this transaction, a job exists
            # exactly when its task is QUEUED, and no extra write transaction is needed.
            enqueue(to_enqueue)
        elif to_enqueue:
            transaction.on_commit(lambda: enqueue(to_enqueue))
    return len(to_enqueue)
