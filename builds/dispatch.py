"""Dispatch: READY (and due RETRYING) tasks to django-q2, in scheduling order, within
the project's resource pools."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import uuid4

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from buildsite.models import Project
from tasks import rawsql
from tasks.models import Task
from tasks.services import Change, apply_transitions
from tasks.states import BuildState, TaskState

from .attempts import claim_change
from .models import Build, ResourcePool
from .resolution import TaskNode, nothing_to_run
from .scheduling import Candidate, choose

log = logging.getLogger(__name__)
S = TaskState
CANDIDATE_LIMIT = 1000
JOB = "builds.jobs.run_task"


def enqueue(task_ids_and_attempts: list[tuple[int, int]]) -> None:
    broker = get_broker()  # one for the batch: creating one costs as much as signing a job
    enqueue_many = getattr(broker, "enqueue_many", None)
    if enqueue_many is not None and not (Conf.SYNC or Conf.CACHED):
        # One statement for the batch instead of one per job.
        enqueue_many([SignedPackage.dumps(job_package(t, a)) for t, a in task_ids_and_attempts])
        return
    for task_id, attempt in task_ids_and_attempts:
        async_task(
            JOB,
            task_id,
            attempt,
            task_name=job_name(task_id, attempt),
            save=False,
            broker=broker,
        )


def job_name(task_id: int, attempt: int) -> str:
    return f"task-{task_id}-{attempt}"


def job_package(task_id: int, attempt: int) -> dict[str, Any]:
    """The package django-q2's `async_task` builds for a task's job (its `sync` and
    `cached` modes aside, which go through `async_task` itself)."""
    package: dict[str, Any] = {
        "id": uuid4().hex,
        "name": job_name(task_id, attempt),
        "func": JOB,
        "args": (task_id, attempt),
        "save": False,
    }
    if Conf.ACK_FAILURES:
        package["ack_failure"] = Conf.ACK_FAILURES
    package["kwargs"] = {}
    package["started"] = timezone.now()
    pre_enqueue.send(sender="django_q", task=package)
    return package


def jobs_are_transactional() -> bool:
    """True when jobs are rows in our database (every deployment), except when they run
    inline, where a job would start inside the transaction that queued it."""
    return bool(Conf.ORM) and not Conf.SYNC


def dispatch_on_commit(project_id: int) -> None:
    transaction.on_commit(lambda: dispatch_ready_tasks(project_id=project_id))


def dispatch_ready_tasks(*, project_id: int | None = None, held: Held | None = None) -> int:
    """Queue what may run now; returns how many tasks were queued. Safe to call from
    any number of processes: the project row is locked (PostgreSQL) or the database is
    (SQLite IMMEDIATE), and each move is a conditional update. With `held`, the
    caller's transaction may hold the project's lock already (`locked_capacity`)."""
    now = timezone.now()
    if project_id is None:
        # order_by(): the model's ordering would add `id` to the DISTINCT (a row per task).
        tasks = Task.objects.order_by()
        due_retry = tasks.filter(state=S.RETRYING, not_before__lte=now)
        project_ids = set(
            tasks.filter(state=S.READY).values_list("build__project_id", flat=True).distinct()
        ) | set(due_retry.values_list("build__project_id", flat=True).distinct())
    else:
        project_ids = {project_id}
    queued = 0
    for pid in sorted(project_ids):
        queued += _dispatch_project(pid, now, held=held)[0]
    return queued


CANDIDATE_COLUMNS = (
    "id",
    "build_id",
    "name",
    "state",
    "attempts",
    "priority",
    "claims",
    "deadline",
    "ready_at",
    "not_before",
)


def _waiting(
    project_id: int, now: datetime, capacity: dict[str, int]
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """READY and due RETRYING tasks of the project, best first, as plain dicts; and,
    when it has pools, what its tasks hold of them (`pool_in_use`), read in the same
    statement: on PostgreSQL each statement is a round trip made while holding the
    project's lock."""
    task, build = rawsql.table(Task), rawsql.table(Build)
    waiting_sql = (
        f"SELECT {', '.join('t.' + c for c in CANDIDATE_COLUMNS)}, "
        "b.pipeline_version_id, b.state, 1 "
        f"FROM {task} t "
        f"JOIN {build} b ON b.id = t.build_id WHERE b.project_id = %s "
        "AND (t.state = %s OR (t.state = %s AND t.not_before <= %s)) "
        "ORDER BY t.priority DESC, t.id LIMIT %s"
    )
    not_before = rawsql.to_db(Task, "not_before", now)
    params: list[Any] = [project_id, S.READY, S.RETRYING, not_before, CANDIDATE_LIMIT]
    sql, claims_at = waiting_sql, CANDIDATE_COLUMNS.index("claims")
    if capacity:
        # The claims in the column of a candidate's claims, the other columns empty.
        blanks = ["NULL"] * (len(CANDIDATE_COLUMNS) + 2)
        blanks[claims_at] = "t.claims"
        sql = f"SELECT * FROM ({waiting_sql}) w UNION ALL {_holding_sql(', '.join(blanks) + ', 0')}"
        params += [project_id, S.QUEUED, S.RUNNING]
    waiting, held = [], []
    for row in rawsql.from_db(Task, CANDIDATE_COLUMNS, rawsql.fetch(sql, params)):
        if not row[-1]:
            held.append(row[claims_at])
            continue
        candidate = dict(zip(CANDIDATE_COLUMNS, row[:-3], strict=True))
        candidate["version_id"], candidate["build_state"] = row[-3:-1]
        waiting.append(candidate)
    # A UNION need not keep the inner ORDER BY's order: sorted again here.
    waiting.sort(key=lambda t: (-t["priority"], t["id"]))
    return waiting, _count_claims(held, capacity)


@lru_cache(maxsize=2)
def _holding_sql(columns: str) -> str:
    """`columns` of what QUEUED and RUNNING tasks of a project hold: the rows dispatch
    and the resources page both count (`pool_in_use`, `_waiting`)."""
    return (
        f"SELECT {columns} FROM {rawsql.table(Task)} t JOIN {rawsql.table(Build)} b "
        "ON b.id = t.build_id WHERE b.project_id = %s AND t.state IN (%s, %s)"
    )


def pool_in_use(project_id: int, capacity: dict[str, int]) -> Counter[str]:
    """What QUEUED and RUNNING tasks of the project hold of its pools (those in
    `capacity`): what dispatch counts, and what the resources page shows."""
    rows = rawsql.fetch(_holding_sql("t.claims"), [project_id, S.QUEUED, S.RUNNING])
    claims = [held for (held,) in rawsql.from_db(Task, ("claims",), rows)]
    return _count_claims(claims, capacity)


def _count_claims(claims: list[dict[str, int] | None], capacity: dict[str, int]) -> Counter[str]:
    in_use: Counter[str] = Counter()
    for held in claims:
        in_use.update({p: n for p, n in (held or {}).items() if p in capacity})
    return in_use


def lock_project(project_id: int) -> None:
    """Serialises dispatchers of one project, so pools are never over-committed. SQLite
    needs no lock: its IMMEDIATE transactions already run one at a time. Read the pools'
    capacity after it, in a statement of its own: under READ COMMITTED a statement that
    waited for the lock still sees the other tables as they were when it began, so it
    would miss a resize (`services.set_pool`, which takes the lock) committed meanwhile."""
    if connection.features.has_select_for_update:
        sql = f"SELECT id FROM {rawsql.table(Project)} WHERE id = %s FOR UPDATE"
        rawsql.fetch(sql, [project_id])


@dataclass
class Held:
    """What a settling transaction holds: the builds it locked, and for each project it
    locked, its pools' capacity as read after that lock, which stays current until
    the commit (a resize takes the same lock, `services.set_pool`)."""

    builds: set[int] = field(default_factory=set)
    capacity: dict[int, dict[str, int]] = field(default_factory=dict)


def locked_capacity(
    project_id: int, held: Held | None = None, *, busy: Mapping[str, float] | None = None
) -> dict[str, int]:
    """Lock the project and read its pools' capacity after the lock; with `held`,
    once per transaction (each is a round trip on PostgreSQL, made under locks).
    With `busy` (seconds by pool name), add that busy time to those pools too, in the
    statement that reads the capacity when it is read (`pool_capacity`)."""
    if held is not None and project_id in held.capacity:
        if busy:
            add_busy_time(project_id, busy)
        return held.capacity[project_id]
    lock_project(project_id)
    capacity = pool_capacity(project_id, busy=busy)
    if held is not None:
        held.capacity[project_id] = capacity
    return capacity


@dataclass(frozen=True)
class Taken:
    """What `dispatch_and_take` gave the calling worker: either `instant`, tasks with
    nothing to run, left QUEUED (no job) for it to end at once, as (task id, attempt),
    or `task_id`, the best task to run, already claimed for it as `attempt` (None:
    nothing may run now); and the `capacity` of the project's pools it went by."""

    instant: list[tuple[int, int]]
    task_id: int | None
    attempt: int = 0
    capacity: dict[str, int] = field(default_factory=dict)


def dispatch_and_take(*, project_id: int, worker: str, held: Held, instant: bool = False) -> Taken:
    """Dispatch as `dispatch_ready_tasks` does, but the best task chosen is the calling
    worker's: queued and claimed for it in the same step, with no job (a worker that
    has just settled a task of the project's pools runs it next; `builds/execution.py`).
    With `instant`, tasks with nothing to run that the pools admit now are the worker's
    instead, up to INSTANT_BATCH: they hold their claims for no time (`choose`).

    The project is locked now, and every settler locks its builds before the project:
    ending a task, or marking a QUEUED build RUNNING, would lock its build after it, and
    PostgreSQL would find a deadlock beside a settler that holds that build. So tasks
    to end at once come from builds the caller `held` already, and the task to run
    from those or from RUNNING builds; the others get their jobs."""
    _, taken = _dispatch_project(
        project_id, timezone.now(), worker=worker, held=held, instant=instant
    )
    return taken


INSTANT_BATCH = 200


def _dispatch_project(
    project_id: int,
    now: datetime,
    *,
    worker: str = "",
    held: Held | None = None,
    instant: bool = False,
) -> tuple[int, Taken]:
    """Queue what may run now (with `worker`, the best of it claimed for that worker,
    or with `instant` what has nothing to run left to it: `dispatch_and_take`);
    returns how many tasks were queued and what the worker was given."""
    locked = held.builds if held is not None else set()
    with transaction.atomic(savepoint=False):
        capacity = locked_capacity(project_id, held)
        waiting, in_use = _waiting(project_id, now, capacity)
        if not waiting:
            return 0, Taken([], None, capacity=capacity)
        by_id = {t["id"]: t for t in waiting}
        takeable = (
            {
                t["id"]
                for t in waiting
                if t["build_id"] in locked or t["build_state"] == BuildState.RUNNING
            }
            if worker
            else set()
        )
        stepless = {  # ended at once: only of a build this transaction holds
            i
            for i in takeable
            if instant
            and by_id[i]["build_id"] in locked
            and nothing_to_run(by_id[i]["version_id"], by_id[i]["name"])
        }
        decision = choose(
            [
                Candidate(
                    id=t["id"],
                    priority=t["priority"],
                    waiting_since=((t["not_before"] or t["ready_at"]) or now).timestamp(),
                    claims=t["claims"] or {},
                    deadline=t["deadline"].timestamp() if t["deadline"] else None,
                )
                for t in waiting
            ],
            capacity=capacity,
            in_use=in_use,
            now=now.timestamp(),
            aging_per_minute=settings.BUILDSITE["AGING_PER_MINUTE"],
            instant=stepless,
        )
        # Those with nothing to run go first, alone: the rest is chosen again once they
        # ended, so a task's events never show the pool held by more than it admits.
        instant_now = [i for i in decision.dispatch if i in stepless][:INSTANT_BATCH]
        changes = [
            Change(_node(by_id[i]), S(by_id[i]["state"]), S.QUEUED, {"queued_at": now})
            for i in instant_now or decision.dispatch
        ]
        if instant_now:  # left QUEUED without jobs, for the worker to end at once
            applied = apply_transitions(project_id=project_id, changes=changes)
            given = [(c.task.id, c.task.attempts + 1) for c in applied]
            return len(given), Taken(given, None, capacity=capacity)
        to_run = [c.task for c in changes if c.task.id in takeable]
        taken = to_run[0] if to_run else None
        if taken is not None:
            changes.append(claim_change(taken, taken.attempts + 1, now, worker))
        applied = apply_transitions(project_id=project_id, changes=changes)
        if taken is None or taken.state != S.RUNNING:
            return queue_jobs(applied), Taken([], None, capacity=capacity)
        queued = queue_jobs([c for c in applied if c.task.id != taken.id])
        return queued + 1, Taken([], taken.id, taken.attempts, capacity)


def queue_jobs(applied: list[Change]) -> int:
    """One job for each task these steps left QUEUED; returns how many."""
    to_enqueue = [(c.task.id, c.task.attempts + 1) for c in applied if c.new == S.QUEUED]
    if to_enqueue and jobs_are_transactional():
        # The ORM broker's jobs are rows: written in this transaction, a job exists
        # exactly when its task is QUEUED, and no extra write transaction is needed.
        enqueue(to_enqueue)
    elif to_enqueue:
        transaction.on_commit(lambda: enqueue(to_enqueue))
    return len(to_enqueue)


def pool_capacity(project_id: int, *, busy: Mapping[str, float] | None = None) -> dict[str, int]:
    """The capacity of the project's pools by name. With `busy` (seconds by pool name),
    that busy time is added to those pools first; on PostgreSQL in the same statement
    (its data-modifying WITH runs on the same snapshot as the read, which sees the
    capacity as committed when the statement began: after the caller's lock)."""
    pools = rawsql.table(ResourcePool)
    read = f"SELECT name, capacity FROM {pools} WHERE project_id = %s"
    if busy and connection.vendor == "postgresql":
        # Plain values, not arrays: the statement is prepared (`rawsql`), one text per
        # number of pools.
        rows = ", ".join(["(%s, %s::float8)"] * len(busy))
        add = (
            f"UPDATE {pools} p SET busy_seconds = p.busy_seconds + b.seconds "
            f"FROM (VALUES {rows}) AS b(name, seconds) "
            "WHERE p.project_id = %s AND p.name = b.name"
        )
        params = [*(v for pair in busy.items() for v in pair), project_id, project_id]
        return dict(rawsql.fetch(f"WITH added AS ({add}) {read}", params))
    if busy:
        add_busy_time(project_id, busy)
    return dict(rawsql.fetch(read, [project_id]))


def add_busy_time(project_id: int, busy: Mapping[str, float]) -> None:
    """Add `busy` (seconds by pool name) to the project's pools of those names."""
    sql = (
        f"UPDATE {rawsql.table(ResourcePool)} SET busy_seconds = busy_seconds + %s "
        "WHERE project_id = %s AND name = %s"
    )
    for pool, seconds in busy.items():
        rawsql.execute(sql, [seconds, project_id, pool])


def with_queueing(changes: list[Change], now: datetime) -> list[Change]:
    """For a project without pools nothing can hold a READY task back, so the tasks
    these steps leave READY go on to QUEUED in the same UPDATE (and `queue_jobs` gives
    them their jobs) instead of being read back by a dispatch scan."""
    last: dict[int, Change] = {}
    for change in changes:
        last[change.task.id] = change
    extra = [
        Change(c.task, S.READY, S.QUEUED, {"queued_at": now})
        for c in last.values()
        if c.new == S.READY
    ]
    return [*changes, *extra]


def _node(row: dict[str, Any]) -> TaskNode:
    return TaskNode(
        id=row["id"],
        build_id=row["build_id"],
        name=row["name"],
        state=row["state"],
        attempts=row["attempts"],
        needs=[],
    )
